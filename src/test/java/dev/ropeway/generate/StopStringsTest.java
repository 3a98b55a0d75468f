package dev.ropeway.generate;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class StopStringsTest {

    @Test
    void aStopStringSpanningPiecesIsHeldBackThenDropped() {
        StopStrings stops = new StopStrings(List.of("<|end|>"));
        StopStrings.Piece first = stops.push("Hello <|e");
        assertEquals("Hello ", first.text(), "'<|e' could start the stop string, so it waits");
        assertFalse(first.stopped());
        StopStrings.Piece second = stops.push("nd|> and after");
        assertEquals("", second.text());
        assertEquals("<|end|>", second.stop());
        assertEquals("<|end|>", stops.matched());
        assertThrows(IllegalStateException.class, () -> stops.push("more"));
    }

    @Test
    void heldTextIsReleasedWhenItTurnsOutNotToBeAStop() {
        StopStrings fresh = new StopStrings(List.of("STOP"));
        assertEquals("a ", fresh.push("a ST").text());
        assertEquals("STA", fresh.push("A").text());
        assertEquals("x", fresh.push("xS").text());
        assertEquals("S", fresh.flush(), "at the end, the held text is shown after all");
        assertNull(fresh.matched());
    }

    @Test
    void aStopStringThatIsAPrefixOfAnotherStopsFirst() {
        StopStrings stops = new StopStrings(List.of("Observation:", "Observation"));
        assertEquals("x ", stops.push("x Obser").text());
        StopStrings.Piece piece = stops.push("vation: y");
        assertEquals("", piece.text());
        assertEquals("Observation", piece.stop());

        // The longer one still stops when it is the one that completes first.
        StopStrings other = new StopStrings(List.of("abcd", "bcx"));
        assertEquals("", other.push("ab").text());
        StopStrings.Piece p = other.push("cd");
        assertEquals("abcd", p.stop());
        assertEquals("", p.text());
    }

    @Test
    void theFirstStopToCompleteWinsWhateverThePieces() {
        // Reference: feed one character at a time.
        List<String> stopList = List.of("abc", "bc", "cab", "b c", "ccc");
        Random random = new Random(3);
        for (int trial = 0; trial < 500; trial++) {
            StringBuilder text = new StringBuilder();
            int n = 1 + random.nextInt(30);
            for (int i = 0; i < n; i++) text.append("abc  xy".charAt(random.nextInt(7)));
            String[] expected = run(new StopStrings(stopList), chars(text.toString()));
            String[] actual = run(new StopStrings(stopList), randomPieces(random, text.toString()));
            assertEquals(expected[0], actual[0], "text for " + text);
            assertEquals(expected[1], actual[1], "stop for " + text);
            // Whatever is shown is a prefix of the text, and never contains a stop string.
            assertTrue(text.toString().startsWith(actual[0]));
            for (String s : stopList) assertFalse(actual[0].contains(s));
        }
    }

    private static List<String> chars(String s) {
        List<String> out = new ArrayList<>();
        for (char c : s.toCharArray()) out.add(String.valueOf(c));
        return out;
    }

    private static List<String> randomPieces(Random random, String s) {
        List<String> out = new ArrayList<>();
        int at = 0;
        while (at < s.length()) {
            int len = Math.min(s.length() - at, random.nextInt(6));
            out.add(s.substring(at, at + len));
            at += len;
        }
        return out;
    }

    /** The shown text and the stop string (or null) after feeding every piece and flushing. */
    private static String[] run(StopStrings stops, List<String> pieces) {
        StringBuilder shown = new StringBuilder();
        for (String piece : pieces) {
            StopStrings.Piece p = stops.push(piece);
            shown.append(p.text());
            if (p.stopped()) return new String[] {shown.toString(), p.stop()};
        }
        shown.append(stops.flush());
        return new String[] {shown.toString(), null};
    }

    @Test
    void withoutStopStringsEverythingPassesAtOnce() {
        StopStrings none = new StopStrings(List.of());
        assertEquals("anything <|end|>", none.push("anything <|end|>").text());
        assertEquals("", none.flush());
    }

    @Test
    void emptyStopStringsAreRefused() {
        assertEquals("a stop string must not be empty",
                assertThrows(RopewayException.class, () -> new StopStrings(List.of("x", ""))).getMessage());
    }
}
