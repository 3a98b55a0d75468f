package dev.ropeway.eval;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.SplittableRandom;

/**
 * RULER's {@code niah_single_1}: one needle "One of the special magic numbers for {key} is: {value}." hidden in a
 * noise haystack (the grass-and-sky paragraph, one copy per line), then the question and RULER's answer prefix, so
 * a base model answers by copying the seven-digit value. RULER writes the template for any number of needles and
 * rewrites it for a single one (Some→A, are all→is, are→is, answers→answer, numbers→number); the same rewrite is
 * applied here, so the prompt is RULER's byte for byte.
 *
 * <p>Keys are adjective-noun pairs as RULER draws them (from a built-in list of common English words instead of the
 * wonderwords package); values are uniform in [1,000,000, 9,999,999]. The needle's line is {@code round(depth × n)}
 * of the n haystack lines (RULER picks it at random; a controlled depth gives the length × depth grid).
 */
public final class Niah {
    static final String TEMPLATE = "Some special magic {type_needle_v} are hidden within the following text. Make sure to "
            + "memorize it. I will quiz you about the {type_needle_v} afterwards.\n{context}\nWhat are all the special magic "
            + "{type_needle_v} for {query} mentioned in the provided text?";
    static final String ANSWER_PREFIX = " The special magic {type_needle_v} for {query} mentioned in the provided text are";
    static final String NEEDLE = "One of the special magic {type_needle_v} for {key} is: {value}.";
    static final String NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
    static final String TYPE_NEEDLE_V = "numbers";

    private static final String[] ADJECTIVES = ("able absent acid afraid ancient angry anxious ashamed awake bitter "
            + "black blue bold brave brief bright broad broken busy calm careful cheap chief clean clear clever close "
            + "cold cool crazy cruel curious dark dear deep direct dirty dry dull eager early easy elegant empty equal "
            + "exact faint fair false famous fancy fast fierce firm flat fond foolish formal free fresh friendly full "
            + "funny gentle giant glad golden good grand gray great green grim happy hard harsh heavy high hollow "
            + "honest hot huge humble hungry icy idle innocent jolly keen kind large late lazy level light little "
            + "lively lonely long loud lucky mad magic mighty mild modern narrow neat nervous new noble odd old open "
            + "orange pale patient plain polite poor proud purple quick quiet rapid rare raw ready red rich rough "
            + "round royal rude sad safe salty sharp shiny short shy silent silly simple slow small smooth soft solid "
            + "sour spare square steep still strange strict strong sudden sweet swift tall tame tender thick thin "
            + "tidy tiny tough true ugly usual vast violet warm wary weak wet white wide wild wise witty wooden "
            + "yellow young").split(" ");
    private static final String[] NOUNS = ("acorn anchor apple arch arrow autumn badge bakery balcony banjo barn "
            + "basket beacon bell berry bicycle blanket boat bottle bridge bucket cabin camera candle canoe canyon "
            + "carpet castle cathedral cellar chair channel chimney circle cliff clock cloud coast compass copper "
            + "cottage crayon crystal cushion desert diamond dragon drum eagle engine falcon feather fence ferry "
            + "fiddle forest fountain garden garlic glacier glove granite guitar hammer harbor harvest helmet hill "
            + "horizon island jacket jungle kettle kitten ladder lagoon lantern lemon library lighthouse lizard "
            + "magnet maple marble meadow mirror mountain mushroom needle notebook oak ocean orchard otter oven "
            + "paddle palace parrot pebble pencil pepper piano pillow planet pocket pond puzzle quarry rabbit "
            + "railway raven ribbon river rocket saddle sailor salmon sandal scarf shadow shell shovel silver "
            + "sparrow spider spoon stable statue storm stream sugar summit sunset swan table teapot temple thunder "
            + "tiger timber tower tractor trumpet tulip tunnel turtle umbrella valley velvet violin wagon walnut "
            + "whale willow window winter wizard wolf yacht zebra").split(" ");

    private Niah() {}

    /** One drawn needle: its key (what the question asks for) and its value (the answer). */
    record Needle(String key, String value) {}

    static Needle needle(SplittableRandom rnd) {
        String key = ADJECTIVES[rnd.nextInt(ADJECTIVES.length)] + "-" + NOUNS[rnd.nextInt(NOUNS.length)];
        return new Needle(key, Integer.toString(rnd.nextInt(1_000_000, 10_000_000)));
    }

    /** The full prompt (answer prefix included) with {@code lines} haystack lines, the needle after {@code at} of them. */
    static String prompt(int lines, int at, Needle needle) {
        if (lines < 0 || at < 0 || at > lines)
            throw new IllegalArgumentException("needle line " + at + " outside a haystack of " + lines + " lines");
        List<String> context = new ArrayList<>(Collections.nCopies(lines, NOISE));
        context.add(at, NEEDLE.replace("{type_needle_v}", TYPE_NEEDLE_V).replace("{key}", needle.key())
                .replace("{value}", needle.value()));
        // RULER's rewrite for one needle and one query, applied to the template before it is filled in.
        String template = (TEMPLATE + ANSWER_PREFIX).replace("Some", "A").replace("are all", "is").replace("are", "is")
                .replace("answers", "answer");
        String type = TYPE_NEEDLE_V.substring(0, TYPE_NEEDLE_V.length() - 1);
        return template.replace("{type_needle_v}", type).replace("{query}", needle.key())
                .replace("{context}", String.join("\n", context));
    }

    /** The sample of one trial with {@code lines} haystack lines and the needle at {@code depth}. */
    static Ruler.Sample sample(int lines, double depth, SplittableRandom rnd) {
        Needle n = needle(rnd);
        int at = (int) Math.round(depth * lines);
        return new Ruler.Sample(prompt(lines, at, n), List.of(n.value()), " " + n.value());
    }
}
