package dev.ropeway.generate;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;

/** A Jinjava interpreter that prints booleans as Python does ({@code True}, {@code False}), as Jinja would. */
final class PythonicInterpreter extends JinjavaInterpreter {

    PythonicInterpreter(Jinjava jinjava, Context context, JinjavaConfig config) {
        super(jinjava, context, config);
    }

    @Override
    public String getAsString(Object value) {
        if (value instanceof Boolean b) return b ? "True" : "False";
        return super.getAsString(value);
    }
}
