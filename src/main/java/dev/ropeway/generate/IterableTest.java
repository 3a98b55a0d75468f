package dev.ropeway.generate;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.exptest.IsIterableExpTest;

import java.util.Map;

/**
 * Jinja's {@code is iterable}, which is true for strings too (Jinjava says false): templates such as Llama 3.2's
 * test {@code content is mapping or content is iterable} to decide whether to print a tool result as JSON.
 */
final class IterableTest extends IsIterableExpTest {

    @Override
    public boolean evaluate(Object var, JinjavaInterpreter interpreter, Object... args) {
        return var instanceof CharSequence || var instanceof Map<?, ?> || super.evaluate(var, interpreter, args);
    }
}
