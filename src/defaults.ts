// Every default and limit of the server and the engine, once, each with where its value comes from.
// Module-specific tuning (AutoPASTA's pass-1 length, profiling sizes) stays with its module.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "./util/packageRoot.js";

/** package.json's version: OpenAPI's info.version, system_fingerprint, /v1/models. */
export const VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;
/** OpenAI's system_fingerprint: which backend configuration produced a response. */
export const SYSTEM_FINGERPRINT = `pasta-server-${VERSION}`;

// --- request defaults ---------------------------------------------------------------------------
/** Tokens generated when a request gives no max_tokens (/v1/generate, chat): ours, a chat answer's length. */
export const DEFAULT_MAX_TOKENS = 256;
/** /v1/completions without max_tokens: OpenAI's legacy default. */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;
/**
 * Temperature of an API request that gives none: OpenAI's default (1). The engine itself samples
 * greedily unless told otherwise (ENGINE_DEFAULT_TEMPERATURE): its in-process callers (profiling,
 * eval, AutoPASTA's pass 1, parity tests) want reproducible argmax output.
 */
export const API_DEFAULT_TEMPERATURE = 1;
export const ENGINE_DEFAULT_TEMPERATURE = 0;
/** PASTA's scaling coefficient alpha (Zhang et al., ICLR 2024, section 3). */
export const DEFAULT_ALPHA = 0.01;

// --- request limits (a 400 beyond them) ---------------------------------------------------------
/** Generation length per request; the context size limits it further. */
export const MAX_TOKENS_LIMIT = 32768;
/** Alternatives per token: OpenAI's own limit for top_logprobs. */
export const MAX_TOP_LOGPROBS = 20;
/** Stop strings per request: ours (each is searched after every token). */
export const MAX_STOP_STRINGS = 8;
/** Characters per stop string: ours (the text is searched for each after every token). */
export const MAX_STOP_LENGTH = 256;
/** Token ids per /detokenize request, checked as the body is parsed: the context size bounds them further. */
export const MAX_DETOKENIZE_TOKENS = 1 << 20;
/** Characters of a GBNF grammar: ours (llama.cpp's example grammars are at most a few KB). */
export const MAX_GRAMMAR_CHARS = 65536;
/**
 * Parse stacks one position of a grammar (GBNF or a JSON schema's) may advance into: each costs every
 * sampled token a pass over the vocabulary. Ours: an enum of a thousand values fits.
 */
export const MAX_GRAMMAR_FAN_OUT = 1024;
/**
 * Optional items a grammar may skip in a row ("a"? "b"? ...): after one character, each of n such items
 * leaves a stack that advances into up to n more, which llama.cpp compares pairwise, a cost that grows
 * with n cubed (400: seconds a token). Ours: node-llama-cpp's JSON-schema grammars skip at most a few.
 */
export const MAX_GRAMMAR_OPTIONAL_RUN = 32;
/** Stacks the grammar check may visit: it runs on the event loop, so a large grammar is refused rather than checked for long. */
export const GRAMMAR_CHECK_VISITS = 200_000;
/** Chat messages per request: ours (each is at least a few tokens, so more fit no context this server runs). */
export const MAX_MESSAGES = 4096;
/**
 * Content parts and history tool calls of all a request's messages together: ours. Each is a few
 * tokens at least, as a message is; without a total, 4096 messages could each carry hundreds.
 */
export const MAX_MESSAGE_ITEMS = 8192;
/** logit_bias entries per request: ours (each is a token id; OpenAI's tokenizers have ~200k). */
export const MAX_LOGIT_BIAS = 1024;
/** repetition_penalty's largest value: ours (beyond it every seen token is as good as banned). */
export const MAX_REPETITION_PENALTY = 10;
/** Tools per chat request, and tool calls per message: ours (each is rendered into the prompt). */
export const MAX_TOOLS = 128;
/** Characters of a tool's description, and of a call's arguments in the history: ours. */
export const MAX_TOOL_TEXT = 65536;
/** Choices per request (`n`): ours; each takes one of the `--parallel` sequences at once. */
export const MAX_CHOICES = 16;
/** Tokens the repetition penalties look back over when a request gives no repeat_last_n: llama-server's. */
export const DEFAULT_REPEAT_LAST_N = 64;
/** Emphasis items per request: ours (bounds span resolution work). */
export const MAX_EMPHASIS_ITEMS = 1024;
/**
 * Attention diagnostics per request, in (token, head) values: ours. Each is ~80 bytes of JSON, so
 * the answer stays under ~6 MB; `every_token` x `all_heads` on a large model is refused up front.
 */
export const MAX_DIAGNOSTIC_VALUES = 65536;
/**
 * Prompt characters per context token: text longer than context x this cannot fit, and is refused
 * before it is tokenized or searched for emphasis (both take time per character).
 */
export const MAX_PROMPT_CHARS_PER_TOKEN = 16;
/** Request bodies larger than this get 413: prompts are text (ours; fastify's own default is 1 MiB). */
export const DEFAULT_BODY_LIMIT_BYTES = 4 * 1024 * 1024;

// --- serving (flags of `pasta-server serve`, src/cli/config.ts) ----------------------------------
/** Context tokens per sequence: llama-server's -c default is the model's, 4096 keeps memory predictable. */
export const DEFAULT_CONTEXT_SIZE = 4096;
/** Sequences decoded at once. */
export const DEFAULT_PARALLEL = 1;
/** Requests that may wait for a sequence before 429. */
export const DEFAULT_MAX_QUEUE = 64;
/** Generated tokens reach JavaScript at most this often (ms): batches the per-token cost; 0: every step. */
export const DEFAULT_STREAM_INTERVAL_MS = 10;
/** Longest a request's sampling of one token may take (ms) before the request ends; 0: no budget. */
export const DEFAULT_SAMPLING_BUDGET_MS = 1000;
/** Seconds per request, queueing included. */
export const DEFAULT_TIMEOUT_SECONDS = 600;
/** Seconds in-flight requests get to finish on SIGTERM (Kubernetes' default grace period is 30 s). */
export const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS = 30;
/**
 * Seconds a client gets to send a whole request (headers and body), and a streaming client to take
 * what it was sent before it is dropped: a client sending one byte every few seconds (slowloris), or
 * never reading, holds a connection no longer than this.
 */
export const DEFAULT_READ_TIMEOUT_SECONDS = 30;
/** Seconds a client is told to wait (Retry-After) when the queue is full or its wait timed out. */
export const RETRY_AFTER_SECONDS = 2;
