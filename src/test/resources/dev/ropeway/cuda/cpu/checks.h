// What the kernel check programs share: random inputs, the relative error against a float64 reference, and one
// printed line per check (counted as a failure when over its tolerance).
#include <random>
#include <string>

typedef std::vector<float> F;
typedef std::vector<double> D;
static std::mt19937_64 rng(20261123);
static int failures = 0;

static F normal(size_t n, double scale) {
    std::normal_distribution<double> d(0, scale);
    F v(n);
    for (auto& x : v) x = (float) d(rng);
    return v;
}

// ||got - want|| / ||want||; infinite when got is not finite where want is.
static double rel(const D& want, const F& got) {
    double d = 0, w = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (std::isfinite(want[i]) && !std::isfinite(got[i])) return INFINITY;
        double e = got[i] - want[i];
        d += e * e;
        w += want[i] * want[i];
    }
    return std::sqrt(d / std::max(w, 1e-300));
}

static void check(const std::string& what, double err, double tol) {
    bool ok = err <= tol;
    std::printf("%-70s %10.3g  (tol %.1g) %s\n", what.c_str(), err, tol, ok ? "ok" : "FAILED");
    if (!ok) failures++;
}
