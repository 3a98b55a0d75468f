package dev.ropeway.rope;

import dev.ropeway.RopewayException;

import java.util.Map;

/**
 * Llama 3.1 scaling (transformers' "llama3"): pairs whose wavelength exceeds {@code original / low_freq_factor}
 * are divided by {@code factor}, pairs shorter than {@code original / high_freq_factor} are kept, and the band
 * between is blended by a smooth factor. It is part of how Llama 3.1 was pretrained, so it must match exactly.
 */
public record Llama3Rope(double theta, int rotaryDim, double factor, double lowFreqFactor, double highFreqFactor,
                         long originalMaxPositionEmbeddings) implements RopeScaling {
    public static final String TYPE = "llama3";

    public Llama3Rope {
        RopeChecks.theta(TYPE, theta);
        RopeChecks.rotaryDim(TYPE, rotaryDim, 2);
        RopeChecks.positive(TYPE, "factor", factor);
        RopeChecks.positive(TYPE, "low_freq_factor", lowFreqFactor);
        RopeChecks.positive(TYPE, "high_freq_factor", highFreqFactor);
        if (!(highFreqFactor > lowFreqFactor))
            throw new RopewayException("rope_type 'llama3' needs 'high_freq_factor' (a number > low_freq_factor "
                    + lowFreqFactor + "), got " + highFreqFactor);
        RopeChecks.positiveWhole(TYPE, "original_max_position_embeddings", originalMaxPositionEmbeddings);
    }

    @Override
    public String type() {
        return TYPE;
    }

    /**
     * Each step is one float32 tensor operation in transformers. Python scalars meet the float32 table as float32
     * operands, and {@code scalar / tensor} is evaluated as {@code tensor.reciprocal() * scalar}, hence the
     * reciprocal-then-multiply for the wavelength and for {@code original / wavelength}.
     */
    @Override
    public float[] inverseFrequencies(long seqLen) {
        float[] inv = RopeMath.standardInverseFrequencies(theta, rotaryDim);
        float f = (float) factor;
        float twoPi = (float) (2 * Math.PI);
        float original = (float) originalMaxPositionEmbeddings;
        float low = (float) lowFreqFactor;
        float bandWidth = (float) (highFreqFactor - lowFreqFactor);
        float lowFreqWavelen = (float) (originalMaxPositionEmbeddings / lowFreqFactor);
        float highFreqWavelen = (float) (originalMaxPositionEmbeddings / highFreqFactor);
        float[] out = new float[inv.length];
        for (int j = 0; j < inv.length; j++) {
            float wavelen = (1f / inv[j]) * twoPi;
            float divided = wavelen > lowFreqWavelen ? inv[j] / f : inv[j];
            float smooth = ((1f / wavelen) * original - low) / bandWidth;
            float smoothed = (1f - smooth) * divided / f + smooth * divided;
            boolean medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
            out[j] = medium ? smoothed : divided;
        }
        return out;
    }

    @Override
    public Map<String, Object> toParameters() {
        Map<String, Object> p = RopeMath.parameters(TYPE, theta);
        p.put("factor", factor);
        p.put("low_freq_factor", lowFreqFactor);
        p.put("high_freq_factor", highFreqFactor);
        p.put("original_max_position_embeddings", originalMaxPositionEmbeddings);
        return p;
    }
}
