// The one utility module the tests (test/) and the benchmarks (bench/) share: server processes,
// HTTP, SSE and metrics parsing, the load driver, paths. Test-only fixtures (models, schemas,
// deployment files) are in test/support/; nothing here imports test/ or bench/.
export * from "./hostile.js";
export * from "./http.js";
export * from "./load.js";
export * from "./metrics.js";
export * from "./paths.js";
export * from "./process.js";
export * from "./sse.js";
export * from "./time.js";
