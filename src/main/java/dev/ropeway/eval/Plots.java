package dev.ropeway.eval;

import dev.ropeway.RopewayException;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.awt.BasicStroke;
import java.awt.Color;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** PNG charts for evaluation reports (XChart, rendered headless). */
public final class Plots {
    private Plots() {}

    /** Distinct colours (a colour-blind-safe set, extended) so a dozen lines stay apart. */
    private static final Color[] PALETTE = {new Color(0, 0, 0), new Color(230, 159, 0), new Color(86, 180, 233),
            new Color(0, 158, 115), new Color(213, 94, 0), new Color(0, 114, 178), new Color(204, 121, 167),
            new Color(240, 228, 66), new Color(120, 60, 160), new Color(150, 150, 150), new Color(160, 90, 40)};

    private static double log2(double v) {
        return Math.log(v) / Math.log(2);
    }

    /**
     * Perplexity against context length, one line per method, the length axis logarithmic (base 2, labelled in tokens
     * at each plotted length), with the training length marked by a dashed vertical line.
     */
    public static void perplexityByLength(Path file, String title, Map<String, List<Perplexity.Result>> series, int trainLength) {
        System.setProperty("java.awt.headless", "true");
        XYChart chart = new XYChartBuilder().width(900).height(560).title(title)
                .xAxisTitle("context length (tokens, log scale)").yAxisTitle("perplexity").build();
        // XChart labels logarithmic axes only at powers of ten; plotting log2(length) with its own labels puts one
        // at every doubling.
        chart.setCustomXAxisTickLabelsFormatter(x -> String.format(java.util.Locale.ROOT, "%,d", Math.round(Math.pow(2, x))));
        chart.getStyler().setXAxisDecimalPattern("0");
        chart.getStyler().setSeriesColors(PALETTE);
        chart.getStyler().setLegendPosition(org.knowm.xchart.style.Styler.LegendPosition.OutsideE);
        chart.getStyler().setChartBackgroundColor(Color.WHITE);
        chart.getStyler().setPlotGridLinesVisible(true);
        double min = Double.MAX_VALUE, max = 0;
        for (var e : series.entrySet()) {
            List<Perplexity.Result> rs = e.getValue();
            double[] x = new double[rs.size()], y = new double[rs.size()];
            for (int i = 0; i < rs.size(); i++) {
                x[i] = log2(rs.get(i).length());
                y[i] = rs.get(i).perplexity();
                min = Math.min(min, y[i]);
                max = Math.max(max, y[i]);
            }
            XYSeries s = chart.addSeries(e.getKey(), x, y);
            s.setMarker(SeriesMarkers.CIRCLE);
        }
        if (max > 0) {
            XYSeries marker = chart.addSeries("trained length L = " + trainLength,
                    new double[]{log2(trainLength), log2(trainLength)}, new double[]{min * 0.95, max * 1.05});
            marker.setMarker(SeriesMarkers.NONE);
            marker.setLineColor(Color.GRAY);
            marker.setLineStyle(new BasicStroke(1.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[]{6f, 4f}, 0f));
        }
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
            String name = file.toString();
            BitmapEncoder.saveBitmap(chart, name.endsWith(".png") ? name.substring(0, name.length() - 4) : name,
                    BitmapEncoder.BitmapFormat.PNG);
        } catch (IOException e) {
            throw new RopewayException("cannot write " + file + ": " + e.getMessage());
        }
    }
}
