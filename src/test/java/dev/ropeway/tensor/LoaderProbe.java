package dev.ropeway.tensor;

/** Run in a child JVM by {@link OpenBlasLoaderProcessTest}: loads OpenBLAS and prints where from, or the error. */
public final class LoaderProbe {
    private LoaderProbe() {}

    public static void main(String[] args) {
        try {
            OpenBlas.ensureLoaded();
            System.out.println("loaded " + OpenBlas.source() + " | " + OpenBlas.config());
        } catch (UnsatisfiedLinkError e) {
            System.out.println("failed " + e.getMessage());
        }
    }
}
