package dev.ropeway.rope;

import dev.ropeway.RopewayException;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.OptionalDouble;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/** The --rope command-line form and the info line. */
class RopeSpecTest {
    private static final RopeContext CTX = new RopeContext(128, 4096, 0, 10000);

    @Test
    void parsesEveryMethod() {
        assertEquals(new DefaultRope(1e4, 128), RopeSpec.parse("none", CTX));
        assertEquals(new DefaultRope(5e5, 128), RopeSpec.parse("default:rope_theta=500000", CTX));
        assertEquals(new LinearRope(1e4, 128, 4), RopeSpec.parse("linear:factor=4", CTX));
        assertEquals(new DynamicNtkRope(1e4, 128, 2, 4096), RopeSpec.parse("dynamic:factor=2", CTX));
        assertEquals(new StaticNtkRope(1e4, 128, 4), RopeSpec.parse(" ntk : factor = 4 ", CTX));
        assertEquals(new YarnRope(1e4, 128, 4, 2048, 32, 1, OptionalDouble.empty(), OptionalDouble.empty(),
                        OptionalDouble.empty(), true),
                RopeSpec.parse("yarn:factor=4,original_max_position_embeddings=2048,beta_fast=32", CTX));
        assertEquals(new YarnRope(1e4, 128, 4, 4096, 32, 1, OptionalDouble.empty(), OptionalDouble.empty(),
                        OptionalDouble.empty(), false),
                RopeSpec.parse("yarn:factor=4,truncate=false", CTX));
        assertEquals(new Llama3Rope(5e5, 128, 8, 1, 4, 8192), RopeSpec.parse(
                "llama3:factor=8,low_freq_factor=1,high_freq_factor=4,original_max_position_embeddings=8192,"
                        + "rope_theta=5e5", CTX));
    }

    @Test
    void longRopeTakesSemicolonSeparatedLists() {
        RopeContext ctx = new RopeContext(8, 4096, 0, 10000);
        LongRope rope = (LongRope) RopeSpec.parse(
                "longrope:short_factor=1;1.1;1.2;1.3,long_factor=2;3;4;5,original_max_position_embeddings=1024", ctx);
        assertEquals(List.of(1.0, 1.1, 1.2, 1.3), rope.shortFactor());
        assertEquals(List.of(2.0, 3.0, 4.0, 5.0), rope.longFactor());
        assertEquals(4.0, rope.factor(), "factor defaults to max_position_embeddings / original");
    }

    @Test
    void rejectsUnknownMethodsAndKeysWithTheAllowedOnes() {
        assertError("unknown RoPE method 'xpos' (known: none, default, linear, dynamic, yarn, llama3, longrope, ntk, e2, clex)",
                "xpos:factor=2");
        assertError("RoPE method 'linear' has no key 'beta_fast' (allowed: rope_theta, factor)",
                "linear:factor=2,beta_fast=3");
        assertError("RoPE method 'ntk' has no key 'scale' (allowed: rope_theta, factor)", "ntk:scale=2");
    }

    @Test
    void rejectsMalformedValues() {
        assertError("RoPE key 'factor' needs a number, got 'four'", "linear:factor=four");
        assertError("RoPE key 'factor' needs a number, got ''", "linear:factor=");
        assertError("RoPE key 'original_max_position_embeddings' needs a whole number, got '2048.5'",
                "yarn:factor=2,original_max_position_embeddings=2048.5");
        assertError("RoPE key 'short_factor' needs a number, got '1;x'", "longrope:short_factor=1;x");
        assertError("RoPE spec 'linear:factor': expected key=value, got 'factor'", "linear:factor");
        assertError("RoPE spec 'linear:factor=2,factor=3' gives 'factor' twice", "linear:factor=2,factor=3");
        assertError("rope_type 'linear' needs 'factor' (a number > 0)", "linear");
        assertError("rope_type 'yarn' needs 'factor' (a number > 0), got -1.0", "yarn:factor=-1");
    }

    private static void assertError(String expected, String spec) {
        assertEquals(expected, assertThrows(RopewayException.class, () -> RopeSpec.parse(spec, CTX)).getMessage());
    }

    @Test
    void describesEachMethodOnOneLine() {
        assertEquals("yarn factor=4 original=2048 beta_fast=32 beta_slow=1 attention_scaling=1.1386 ramp=16..41 "
                + "theta=10000", RopeSpec.describe(YarnRope.of(1e4, 128, 4, 2048)));
        assertEquals("default theta=500000", RopeSpec.describe(new DefaultRope(5e5, 128)));
        assertEquals("linear factor=2.5 theta=10000", RopeSpec.describe(new LinearRope(1e4, 128, 2.5)));
        assertEquals("ntk factor=4 base=40889.9424 theta=10000", RopeSpec.describe(new StaticNtkRope(1e4, 128, 4)));
        assertEquals("dynamic factor=2 max_position_embeddings=4096 theta=10000",
                RopeSpec.describe(new DynamicNtkRope(1e4, 128, 2, 4096)));
        assertEquals("llama3 factor=8 low_freq_factor=1 high_freq_factor=4 original=8192 theta=500000",
                RopeSpec.describe(new Llama3Rope(5e5, 128, 8, 1, 4, 8192)));
        List<Double> ramp = IntStream.range(0, 4).mapToObj(i -> 1.0 + i / 2.0).toList();
        assertEquals("longrope factor=4 original=64 attention_scaling=1.1547 short=1..2.5 long=1..2.5 theta=10000",
                RopeSpec.describe(new LongRope(1e4, 8, ramp, ramp, 4, 64, OptionalDouble.empty())));
    }
}
