package dev.ropeway.train.corpus;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TextCleanerTest {

    @Test
    void lineEndingsBecomeLf() {
        assertEquals("a\nb\nc\n\nd", TextCleaner.normalizeLineEndings("a\r\nb\rc\n\r\nd"));
        assertEquals("a\nb\n", TextCleaner.clean("a  \r\nb\t\r\n"));
    }

    @Test
    void trailingWhitespaceBlankRunsAndEdgesAreTidied() {
        String raw = "\n\n  indented stays  \nline\t\n\n\n\n\n\nafter five blanks\n \n\t\nafter two\n\n\n";
        assertEquals("  indented stays\nline\n\n\nafter five blanks\n\n\nafter two\n", TextCleaner.clean(raw));
        assertEquals("", TextCleaner.clean(" \n\t\r\n"));
    }

    @Test
    void gutenbergHeaderFooterCreditAndLicenceAreRemoved() {
        String raw = "\uFEFFThe Project Gutenberg EBook of Moby Dick, by Herman Melville\r\n"
                + "\r\nThis eBook is for the use of anyone anywhere at no cost\r\n\r\n"
                + "*** START OF THIS PROJECT GUTENBERG EBOOK MOBY DICK; OR THE WHALE ***\r\n\r\n\r\n"
                + "Produced by Daniel Lazarus and Jonesey\r\n\r\n\r\n\r\n\r\n"
                + "CHAPTER 1. Loomings.\r\n\r\nCall me Ishmael.   \r\n\r\n"
                + "End of Project Gutenberg's Moby Dick; or The Whale, by Herman Melville\r\n\r\n"
                + "*** END OF THIS PROJECT GUTENBERG EBOOK MOBY DICK; OR THE WHALE ***\r\n\r\n"
                + "*** START: FULL LICENSE ***\r\nTHE FULL PROJECT GUTENBERG LICENSE\r\n";
        String clean = TextCleaner.clean(raw);
        assertEquals("CHAPTER 1. Loomings.\n\nCall me Ishmael.\n", clean);
    }

    @Test
    void olderSmallPrintHeaderIsRemoved() {
        String raw = "Project Gutenberg Etext\n**The Legal Small Print**\nlicence words\n"
                + "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\nThe text itself.\n";
        assertEquals("The text itself.\n", TextCleaner.clean(raw));
    }

    @Test
    void textWithoutMarkersKeepsItsWords() {
        String raw = "A manual that mentions Project Gutenberg.\nProduced by nobody in particular.\n"
                + "End of Project Gutenberg's influence on this page.\n";
        assertEquals(raw, TextCleaner.clean(raw));
        // A sign-off line only counts just above the END marker, never in the middle of the book.
        String book = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\nEnd of the Project Gutenberg talk, she said.\n"
                + "More story.\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n";
        String clean = TextCleaner.clean(book);
        assertTrue(clean.startsWith("End of the Project Gutenberg talk"), clean);
        assertTrue(clean.endsWith("More story.\n"), clean);
        assertFalse(clean.contains("***"), clean);
    }
}
