package dev.ropeway.cli;

import dev.ropeway.RopewayException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;

/** The {@code ropeway} command: one binary, one subcommand per job. */
@Command(name = "ropeway", mixinStandardHelpOptions = true, versionProvider = Version.class,
        description = "Extend the context window of RoPE language models (Llama, Mistral, Qwen2).",
        subcommands = {InfoCommand.class, ScoreCommand.class, InitCommand.class, CorpusCommand.class,
                TokenizerCommand.class, PretrainCommand.class, ExtendCommand.class, EvalCommand.class, CompareCommand.class, ExportCommand.class, ImportCommand.class, CacheCommand.class, DevicesCommand.class, GenerateCommand.class, ServeCommand.class, BenchCommand.class, DemoCommand.class, DistCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    public static void main(String[] args) {
        System.exit(execute(args));
    }

    /** Runs a command line and returns its exit code: 0 success, 1 bad usage or input, 2 unexpected failure. */
    public static int execute(String... args) {
        return commandLine().execute(args);
    }

    public static CommandLine commandLine() {
        CommandLine cli = new CommandLine(new Main());
        cli.setExecutionExceptionHandler((ex, line, parsed) -> {
            PrintWriter err = line.getErr();
            if (ex instanceof RopewayException) {
                err.println("error: " + ex.getMessage());
                err.flush();
                return 1;
            }
            err.println("internal error: " + ex);
            ex.printStackTrace(err);
            err.flush();
            return 2;
        });
        return cli;
    }
}
