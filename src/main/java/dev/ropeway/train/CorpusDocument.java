package dev.ropeway.train;

/** One document of a corpus: a stable name (its path inside the corpus, plus a line number for JSON lines) and its text. */
public record CorpusDocument(String name, String text) {}
