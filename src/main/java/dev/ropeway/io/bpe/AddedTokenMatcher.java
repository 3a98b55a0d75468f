package dev.ropeway.io.bpe;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.Comparator;
import java.util.List;

/**
 * Finds added tokens (such as {@code <s>}) written literally in a text, as the tokenizers library does before it
 * pre-tokenizes: leftmost match first, the longest token where several start at the same place. The text between
 * matches is then pre-tokenized on its own, so a match also ends any word it touches.
 */
public final class AddedTokenMatcher {
    /** Receives a text in order as plain stretches and matched tokens. */
    public interface Sink {
        void text(int from, int to);

        void token(int id);
    }

    private final String[] contents;
    private final int[] ids;
    private final BitSet firstChars = new BitSet();

    public AddedTokenMatcher(List<BpeModel.AddedToken> tokens) {
        List<BpeModel.AddedToken> sorted = new ArrayList<>();
        for (BpeModel.AddedToken t : tokens) if (!t.content().isEmpty()) sorted.add(t);
        // Longest first, so the first token that matches at a position is the longest one there.
        sorted.sort(Comparator.comparingInt((BpeModel.AddedToken t) -> -t.content().length()).thenComparing(BpeModel.AddedToken::content));
        contents = new String[sorted.size()];
        ids = new int[sorted.size()];
        for (int i = 0; i < contents.length; i++) {
            contents[i] = sorted.get(i).content();
            ids[i] = sorted.get(i).id();
            firstChars.set(contents[i].charAt(0));
        }
    }

    public void split(String text, Sink sink) {
        int start = 0;
        if (contents.length > 0) {
            for (int i = 0; i < text.length(); i++) {
                if (!firstChars.get(text.charAt(i))) continue;
                for (int t = 0; t < contents.length; t++) {
                    if (!text.startsWith(contents[t], i)) continue;
                    if (i > start) sink.text(start, i);
                    sink.token(ids[t]);
                    start = i + contents[t].length();
                    i = start - 1;
                    break;
                }
            }
        }
        if (start < text.length()) sink.text(start, text.length());
    }
}
