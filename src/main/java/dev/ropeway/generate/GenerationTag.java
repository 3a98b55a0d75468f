package dev.ropeway.generate;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.tag.Tag;
import com.hubspot.jinjava.tree.Node;
import com.hubspot.jinjava.tree.TagNode;

/**
 * transformers' {@code {% generation %}...{% endgeneration %}}, which marks the assistant's part of a rendered
 * conversation for training masks. For rendering a prompt it is transparent: its body is output as is.
 */
final class GenerationTag implements Tag {

    @Override
    public String getName() {
        return "generation";
    }

    @Override
    public String getEndTagName() {
        return "endgeneration";
    }

    @Override
    public String interpret(TagNode tagNode, JinjavaInterpreter interpreter) {
        StringBuilder out = new StringBuilder();
        for (Node child : tagNode.getChildren()) out.append(child.render(interpreter).getValue());
        return out.toString();
    }
}
