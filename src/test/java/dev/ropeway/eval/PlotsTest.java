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
}
