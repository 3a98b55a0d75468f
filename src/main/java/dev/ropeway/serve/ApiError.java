package dev.ropeway.serve;

/**
 * A request the server refuses, with the HTTP status and the OpenAI error type it is reported as
 * ({@code {"error": {"message", "type", "param", "code"}}}).
 */
final class ApiError extends RuntimeException {
    final int status;
    final String type;
    final String param;

    ApiError(int status, String type, String param, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
    }

    static ApiError invalid(String param, String message) {
        return new ApiError(400, "invalid_request_error", param, message);
    }

    java.util.Map<String, Object> body() {
        java.util.Map<String, Object> error = new java.util.LinkedHashMap<>();
        error.put("message", getMessage());
        error.put("type", type);
        error.put("param", param);
        error.put("code", status == 404 ? "model_not_found" : null);
        return java.util.Map.of("error", error);
    }
}
