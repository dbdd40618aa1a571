// pasta-server: declarations shared by our addon files (AddonSteering.cpp, AddonGenerationLoop.cpp).
// Copied into node-llama-cpp/llama/addon/ by native/build.mjs.
#pragma once
#include <cstdint>

class AddonContext;

// Natural-log softmax of one row of logits, written as [logprob(token), id0, logprob0, ..., id(k-1),
// logprob(k-1)] (1 + 2*topK doubles; NaN for an out-of-range token). Only the top-k are sorted.
void pastaLogprobs(const float* logits, int32_t nVocab, int32_t topK, int32_t token, double* out);

// Stops the context's generation loop (joins its thread) before llama.cpp's context is freed.
void pastaStopGenerationLoop(AddonContext* context);
