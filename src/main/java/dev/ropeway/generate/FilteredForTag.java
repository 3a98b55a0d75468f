package dev.ropeway.generate;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.tag.ForTag;
import com.hubspot.jinjava.objects.collections.PyList;
import com.hubspot.jinjava.tree.TagNode;
import com.hubspot.jinjava.tree.parse.TagToken;
import com.hubspot.jinjava.util.ForLoop;
import com.hubspot.jinjava.util.ObjectIterator;
import com.hubspot.jinjava.util.ObjectTruthValue;
import org.apache.commons.lang3.tuple.Pair;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Jinja's {@code for} with a filter, {@code {% for key, val in tool.items() if key != "return" %}}: the loop runs
 * over the items that pass, so {@code loop.last} and {@code loop.index} count only those. Jinjava reads the
 * {@code if} as part of the iterable's expression, evaluated before the loop variables exist; this tag takes the
 * filter off, applies it, and hands the remaining items to the ordinary loop.
 */
final class FilteredForTag extends ForTag {

    @Override
    public String interpretUnchecked(TagNode tagNode, JinjavaInterpreter interpreter) {
        Pair<List<String>, String> varsAndExpression = getLoopVarsAndExpression((TagToken) tagNode.getMaster());
        String expression = varsAndExpression.getRight();
        int cut = topLevelIf(expression);
        if (cut < 0) return super.interpretUnchecked(tagNode, interpreter);
        List<String> vars = varsAndExpression.getLeft();
        Object collection = interpreter.resolveELExpression(expression.substring(0, cut), tagNode.getLineNumber());
        String condition = expression.substring(cut + 3).strip();
        List<Object> kept = new ArrayList<>();
        ForLoop loop = ObjectIterator.getLoop(collection);
        while (loop.hasNext()) {
            Object item = loop.next();
            interpreter.enterScope();
            try {
                bind(interpreter, vars, item);
                if (ObjectTruthValue.evaluate(interpreter.resolveELExpression(condition, tagNode.getLineNumber()))) kept.add(item);
            } finally {
                interpreter.leaveScope();
            }
        }
        return renderForCollection(tagNode, interpreter, vars, new PyList(kept));
    }

    /** The loop variables for one item, unpacked as the loop itself will: a map entry or a list for several. */
    private static void bind(JinjavaInterpreter interpreter, List<String> vars, Object item) {
        if (vars.size() == 1) {
            interpreter.getContext().put(vars.getFirst(), item);
        } else if (item instanceof Map.Entry<?, ?> entry && vars.size() == 2) {
            interpreter.getContext().put(vars.get(0), entry.getKey());
            interpreter.getContext().put(vars.get(1), entry.getValue());
        } else if (item instanceof List<?> list) {
            for (int i = 0; i < vars.size() && i < list.size(); i++) interpreter.getContext().put(vars.get(i), list.get(i));
        }
    }

    /** Where " if " starts outside quotes and brackets, or -1. */
    static int topLevelIf(String expression) {
        int depth = 0;
        for (int i = 0; i < expression.length(); i++) {
            int quoted = JinjaSyntax.quotedEnd(expression, i);
            if (quoted != i) {
                i = quoted;
                continue;
            }
            char c = expression.charAt(i);
            if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                depth--;
            } else if (depth == 0 && Character.isWhitespace(c) && expression.startsWith("if", i + 1)
                    && i + 3 < expression.length() && Character.isWhitespace(expression.charAt(i + 3))) {
                return i;
            }
        }
        return -1;
    }
}
