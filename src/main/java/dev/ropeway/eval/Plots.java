package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.HeatMapChart;
import org.knowm.xchart.HeatMapChartBuilder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.internal.chartpart.Chart;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.Graphics2D;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import javax.imageio.ImageIO;

/** PNG charts for evaluation reports (XChart, rendered headless). */
public final class Plots {
    private Plots() {}

    /** Distinct colours (a colour-blind-safe set, extended) so a dozen lines stay apart. */
    private static final Color[] PALETTE = {new Color(0, 0, 0), new Color(230, 159, 0), new Color(86, 180, 233),
            new Color(0, 158, 115), new Color(213, 94, 0), new Color(0, 114, 178), new Color(204, 121, 167),
            new Color(240, 228, 66), new Color(120, 60, 160), new Color(150, 150, 150), new Color(160, 90, 40),
            new Color(80, 80, 200)};

    /** A light sequential scale (yellow to blue) on which black cell labels stay readable. */
    private static final Color[] HEAT = {new Color(255, 255, 217), new Color(199, 233, 180), new Color(127, 205, 187),
            new Color(65, 182, 196), new Color(29, 145, 192)};

    /** One point of a line: a length in tokens and a value. */
    public record Point(int length, double value) {}

    /** One method's grid: values[depth index][length index], NaN where there is none. */
    public record Grid(List<Integer> lengths, List<Double> depths, double[][] values) {}

    private static double log2(double v) {
        return Math.log(v) / Math.log(2);
    }

    /**
     * Perplexity against context length, one line per method, the length axis logarithmic (base 2, labelled in tokens
     * at each plotted length), with the training length marked by a dashed vertical line.
     */
    public static boolean perplexityByLength(Path file, String title, Map<String, List<Perplexity.Result>> series, int trainLength) {
        Map<String, List<Point>> points = new LinkedHashMap<>();
        for (var e : series.entrySet())
            points.put(e.getKey(), e.getValue().stream().map(r -> new Point(r.length(), r.perplexity())).toList());
        return byLength(file, title, "perplexity", points, trainLength);
    }

    /**
     * Any per-length measure, drawn as {@link #perplexityByLength} draws perplexity. Like every chart here it returns
     * false, after one warning, on a machine that cannot render text (a server without fonts), so reports still come
     * out, without their pictures.
     */
    public static boolean byLength(Path file, String title, String yAxis, Map<String, List<Point>> series, int trainLength) {
        return drawn(file, () -> drawByLength(file, title, yAxis, series, trainLength));
    }

    private static void drawByLength(Path file, String title, String yAxis, Map<String, List<Point>> series, int trainLength) {
        System.setProperty("java.awt.headless", "true");
        XYChart chart = new XYChartBuilder().width(900).height(560).title(title)
                .xAxisTitle("context length (tokens, log scale)").yAxisTitle(yAxis).build();
        // XChart labels logarithmic axes only at powers of ten; plotting log2(length) with its own labels puts one
        // at every doubling; ticks XChart puts between doublings get a blank (XChart refuses an empty label).
        chart.setCustomXAxisTickLabelsFormatter(x -> Math.abs(x - Math.rint(x)) > 1e-6 ? " "
                : String.format(Locale.ROOT, "%,d", Math.round(Math.pow(2, x))));
        chart.getStyler().setXAxisDecimalPattern("0");
        chart.getStyler().setSeriesColors(PALETTE);
        chart.getStyler().setLegendPosition(Styler.LegendPosition.OutsideE);
        chart.getStyler().setChartBackgroundColor(Color.WHITE);
        chart.getStyler().setPlotGridLinesVisible(true);
        double min = Double.MAX_VALUE, max = -Double.MAX_VALUE;
        for (var e : series.entrySet()) {
            List<Point> ps = e.getValue().stream().filter(p -> Double.isFinite(p.value())).toList();
            if (ps.isEmpty()) continue;
            double[] x = new double[ps.size()], y = new double[ps.size()];
            for (int i = 0; i < ps.size(); i++) {
                x[i] = log2(ps.get(i).length());
                y[i] = ps.get(i).value();
                min = Math.min(min, y[i]);
                max = Math.max(max, y[i]);
            }
            XYSeries s = chart.addSeries(e.getKey(), x, y);
            s.setMarker(SeriesMarkers.CIRCLE);
        }
        if (max >= min && trainLength > 0) {
            double pad = Math.max(1e-9, (max - min) * 0.05);
            XYSeries marker = chart.addSeries("trained length L = " + trainLength,
                    new double[]{log2(trainLength), log2(trainLength)}, new double[]{min - pad, max + pad});
            marker.setMarker(SeriesMarkers.NONE);
            marker.setLineColor(Color.GRAY);
            marker.setLineStyle(new BasicStroke(1.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[]{6f, 4f}, 0f));
        }
        save(file, chart);
    }

    /**
     * A heat map per method (context length across, needle depth down), side by side in one PNG, all on one colour
     * scale from {@code min} to {@code max} (darker is higher) so the maps compare; each cell shows its value.
     */
    public static boolean heatMaps(Path file, String measure, Map<String, Grid> grids, double min, double max, String valuePattern) {
        if (grids.isEmpty()) throw new IllegalArgumentException("no heat maps to draw");
        return drawn(file, () -> drawHeatMaps(file, measure, grids, min, max, valuePattern));
    }

    private static void drawHeatMaps(Path file, String measure, Map<String, Grid> grids, double min, double max, String valuePattern) {
        System.setProperty("java.awt.headless", "true");
        List<HeatMapChart> charts = new ArrayList<>();
        for (var e : grids.entrySet()) {
            Grid g = e.getValue();
            HeatMapChart chart = new HeatMapChartBuilder().width(400).height(340).title(e.getKey() + ": " + measure)
                    .xAxisTitle("context length (tokens)").yAxisTitle("needle depth (0 = start)").build();
            var st = chart.getStyler();
            st.setRangeColors(HEAT);
            st.setMin(min);
            st.setMax(max);
            st.setShowValue(true);
            st.setValueFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
            st.setValueFontColor(Color.BLACK);
            st.setHeatMapValueDecimalPattern(valuePattern);
            st.setChartBackgroundColor(Color.WHITE);
            // Every cell prints its value, so the colour bar (which XChart labels with unrounded bounds) is left out.
            st.setLegendVisible(false);
            st.setDrawBorder(true);
            List<String> xs = g.lengths().stream().map(l -> String.format(Locale.ROOT, "%,d", l)).toList();
            List<String> ys = g.depths().stream().map(d -> String.format(Locale.ROOT, "%.2f", d)).toList();
            List<Number[]> cells = new ArrayList<>();
            for (int di = 0; di < ys.size(); di++)
                for (int li = 0; li < xs.size(); li++)
                    if (Double.isFinite(g.values()[di][li])) cells.add(new Number[]{li, di, g.values()[di][li]});
            chart.addSeries(measure, xs, ys, cells);
            charts.add(chart);
        }
        // XChart's own grid needs rows × cols charts exactly; laying the images out here allows any count.
        int cols = Math.min(3, charts.size()), rows = (charts.size() + cols - 1) / cols;
        int w = charts.getFirst().getWidth(), h = charts.getFirst().getHeight();
        BufferedImage grid = new BufferedImage(cols * w, rows * h, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = grid.createGraphics();
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, grid.getWidth(), grid.getHeight());
        for (int i = 0; i < charts.size(); i++)
            g.drawImage(BitmapEncoder.getBufferedImage(charts.get(i)), (i % cols) * w, (i / cols) * h, null);
        g.dispose();
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            ImageIO.write(grid, "png", file.toFile());
        } catch (IOException e) {
            throw new RopewayException("cannot write " + file + ": " + e.getMessage());
        }
    }

    private static volatile boolean warnedNoFonts;

    /** Runs a drawing; false when the machine has no fonts to draw text with (warned about once). */
    static boolean drawn(Path file, Runnable draw) {
        try {
            draw.run();
            return true;
        } catch (RuntimeException | LinkageError | java.awt.AWTError e) {
            if (!isFontProblem(e)) throw e;
            if (!warnedNoFonts) {
                warnedNoFonts = true;
                System.err.println("warning: charts skipped (" + file.getFileName() + " and later ones): this machine has no "
                        + "fonts to draw text with (" + e.getMessage() + "). Install fontconfig and a font, e.g. "
                        + "apt-get install fontconfig fonts-dejavu-core; the tables are written as usual.");
            }
            return false;
        }
    }

    static boolean isFontProblem(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = String.valueOf(t.getMessage()).toLowerCase(Locale.ROOT);
            if (m.contains("fontconfig") || m.contains("font") || m.contains("freetype")) return true;
        }
        return false;
    }

    private static String stripPng(Path file) {
        String name = file.toString();
        return name.endsWith(".png") ? name.substring(0, name.length() - 4) : name;
    }

    private static void save(Path file, Chart<?, ?> chart) {
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            BitmapEncoder.saveBitmap(chart, stripPng(file), BitmapEncoder.BitmapFormat.PNG);
        } catch (IOException e) {
            throw new RopewayException("cannot write " + file + ": " + e.getMessage());
        }
    }
}
