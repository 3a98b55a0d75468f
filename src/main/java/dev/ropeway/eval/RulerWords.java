package dev.ropeway.eval;

import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * The built-in English words RULER's tasks draw from: adjectives and nouns make the needles' keys ("brave-otter"),
 * and adjectives, nouns and verbs together are the words of {@code cwe}'s lists while a list needs no more than
 * there are (RULER takes these from the wonderwords package, then from a larger list; here, beyond the built-in
 * words, from the distinct words of a text: {@link RulerText#vocabulary()}).
 */
final class RulerWords {
    static final String[] ADJECTIVES = ("able absent acid afraid ancient angry anxious ashamed awake bitter "
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
    static final String[] NOUNS = ("acorn anchor apple arch arrow autumn badge bakery balcony banjo barn "
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
    static final String[] VERBS = ("accept admire advise agree allow answer appear argue arrive attach attend avoid bake balance behave "
            + "believe borrow bounce breathe build calculate carry celebrate change chase cheer choose collect "
            + "combine compare complain concentrate consider continue cough count crawl cross decide deliver "
            + "depend describe deserve destroy develop disagree discover divide double drag dream drift educate "
            + "employ encourage enjoy escape examine exist expand expect explain explore fetch flash float flow "
            + "fold follow forgive gather gaze glide grab greet grow guard guess handle hang happen harm hesitate "
            + "hover hunt hurry ignore imagine improve include inform inspect invent invite join juggle kneel knit "
            + "knock laugh launch listen manage march matter measure melt memorize mention multiply murmur notice "
            + "obey observe offer organize paint pause perform persuade pinch plant play pour practice pray prefer "
            + "prepare pretend print promise protect provide pull punch push question reach realize receive "
            + "recognize reflect refuse relax remain remember repair repeat reply rescue retire return rhyme rinse "
            + "roll rush scatter scramble scribble search settle shiver shrug sing slide smile sneeze solve "
            + "sparkle spell splash squeeze stare steer stir stretch study succeed suggest supply support suppose "
            + "surprise surround swim tease tempt thank throw tickle travel tremble trust twist understand unite "
            + "unlock vanish visit wander warn wave weave whisper whistle wiggle wonder worry wrap wrestle yawn "
            + "yell zoom").split(" ");

    /** Adjectives, nouns and verbs, each once, in sorted order: the pool {@code cwe} samples its words from. */
    static final List<String> COMMON = common();

    private RulerWords() {}

    private static List<String> common() {
        Set<String> all = new TreeSet<>();
        for (String[] list : new String[][]{ADJECTIVES, NOUNS, VERBS}) all.addAll(List.of(list));
        return List.copyOf(all);
    }
}
