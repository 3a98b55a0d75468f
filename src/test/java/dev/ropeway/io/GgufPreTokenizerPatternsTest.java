package dev.ropeway.io;

import dev.ropeway.testutil.LlamaCppNative;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Pre-tokenizer character classes written as lists of ranges: each matches exactly the code points of the class
 * llama.cpp compiled into its library (read from the installed peer's libllama), over every code point up to U+1FFFF.
 * The tokenizer tests compare ids on a sample text, which cannot reach every range.
 */
class GgufPreTokenizerPatternsTest {
    @Test
    void deepSeekLlmClassesAreLlamaCpps() {
        LlamaCppNative llama = LlamaCppNative.load();
        assumeTrue(llama != null, "llama.cpp is not installed for the tests (bin/llama-cpp-peer install)");
        List<String> ours = GgufTokenizerFiles.splitPatterns("deepseek-llm");
        assertNotNull(ours);
        assertEquals(6, ours.size());
        for (String[] pair : new String[][] {{"\\s?[A-Za-z", ours.get(1)}, {"\\s?[!-/", ours.get(2)}, {"[\u4E00-\u9FA5\u0800-", ours.get(4)}}) {
            String theirs = llama.libraryString(pair[0]);
            assertNotNull(theirs, "llama.cpp's library holds a pattern starting " + pair[0]);
            Pattern a = Pattern.compile(characterClass(theirs)), b = Pattern.compile(characterClass(pair[1]));
            int members = 0;
            for (int cp = 0; cp <= 0x1FFFF; cp++) {
                if (Character.isSurrogate((char) cp) && cp <= 0xFFFF) continue;
                String c = Character.toString(cp);
                boolean want = a.matcher(c).matches();
                assertEquals(want, b.matcher(c).matches(), String.format("U+%04X in %s", cp, pair[0]));
                if (want) members++;
            }
            assertTrue(members > 20, members + " members");
        }
    }

    /** The bracketed class of a pattern "\s?[...]+" or "[...]+", as a pattern of its own. */
    private static String characterClass(String pattern) {
        return pattern.substring(pattern.indexOf('['), pattern.lastIndexOf(']') + 1);
    }
}
