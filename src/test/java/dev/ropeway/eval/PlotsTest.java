package dev.ropeway.eval;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PlotsTest {

    @Test
    void heatMapsOfAnyNumberOfMethodsShareOneImage(@TempDir Path dir) throws Exception {
        Map<String, Plots.Grid> grids = new LinkedHashMap<>();
        for (int m = 0; m < 5; m++)
            grids.put("method" + m, new Plots.Grid(List.of(256, 1024), List.of(0.0, 1.0),
                    new double[][]{{0, 0.5}, {1, m == 2 ? Double.NaN : 0.25}}));
        Path file = dir.resolve("maps.png");
        Plots.heatMaps(file, "accuracy", grids, 0, 1, "0.00");
        BufferedImage img = ImageIO.read(file.toFile());
        // Five maps in rows of three: two rows, three columns of 400 x 340.
        assertEquals(3 * 400, img.getWidth());
        assertEquals(2 * 340, img.getHeight());
        // The sixth slot is left blank (white); the first map is drawn.
        assertEquals(0xFFFFFF, img.getRGB(2 * 400 + 200, 340 + 170) & 0xFFFFFF);
        boolean drawn = false;
        for (int x = 0; x < 400 && !drawn; x += 5)
            for (int y = 0; y < 340 && !drawn; y += 5) drawn = (img.getRGB(x, y) & 0xFFFFFF) != 0xFFFFFF;
        assertTrue(drawn, "the first map has coloured pixels");
    }

    @Test
    void lineChartsLabelDoublingsAtAnySpan(@TempDir Path dir) throws Exception {
        // XChart puts ticks between doublings here; they must get a blank label, not an empty one (which it refuses).
        for (List<Integer> lengths : List.of(List.of(32, 64), List.of(1200), List.of(256, 512, 1024, 2048, 4096))) {
            Path file = dir.resolve("line-" + lengths.getFirst() + ".png");
            Plots.byLength(file, "t", "y", Map.of("m", lengths.stream().map(l -> new Plots.Point(l, l / 10.0)).toList()), 64);
            assertEquals(900, ImageIO.read(file.toFile()).getWidth());
        }
    }

    /** A server without fonts: the chart is skipped (false) instead of failing the report; other errors still fail. */
    @org.junit.jupiter.api.Test
    void aMachineWithoutFontsSkipsChartsOnly() {
        java.nio.file.Path file = java.nio.file.Path.of("x.png");
        org.junit.jupiter.api.Assertions.assertFalse(Plots.drawn(file, () -> {
            throw new RuntimeException("Fontconfig head is null, check your fonts or fonts configuration");
        }));
        org.junit.jupiter.api.Assertions.assertTrue(Plots.drawn(file, () -> {}));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> Plots.drawn(file, () -> {
            throw new IllegalStateException("a real bug");
        }));
    }
}
