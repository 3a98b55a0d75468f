package dev.ropeway.eval;

import dev.ropeway.generate.ChatMessage;
import dev.ropeway.generate.ChatTemplate;
import dev.ropeway.io.Tokenizer;

import java.util.List;

/**
 * How a task's prompt reaches the model: as plain text after BOS (a base model), or, for a chat model, the question
 * as a user message in the model's own chat template with the answer prefix after the point where the assistant's
 * reply begins, as RULER prompts chat models (LongBench and LongEval, whose prompts have no answer prefix, put the
 * whole prompt in the message).
 */
public final class PromptFormat {
    private final Tokenizer tok;
    private final ChatTemplate template;

    private PromptFormat(Tokenizer tok, ChatTemplate template) {
        this.tok = tok;
        this.template = template;
    }

    /** Plain text with BOS in front. */
    public static PromptFormat plain(Tokenizer tok) {
        return new PromptFormat(tok, null);
    }

    /** The question in {@code template} as a user message, the answer prefix after the generation prompt. */
    public static PromptFormat chat(Tokenizer tok, ChatTemplate template) {
        return new PromptFormat(tok, java.util.Objects.requireNonNull(template, "template"));
    }

    public boolean chat() {
        return template != null;
    }

    public Tokenizer tokenizer() {
        return tok;
    }

    /** The text the model reads: the prompt, or the rendered chat with the answer prefix after it. */
    public String text(Ruler.Sample s) {
        if (template == null) return s.prompt();
        return template.render(List.of(new ChatMessage("user", s.question())), true) + s.answerPrefix();
    }

    /**
     * The prompt's token ids: with BOS in front for plain text; a rendered chat is encoded as it is (its special
     * tokens, BOS among them when the template writes one, parsed from the text).
     */
    public int[] ids(Ruler.Sample s) {
        return template == null ? Passkey.tokens(tok, s.prompt()) : tok.encode(text(s), false);
    }
}
