// Attention steering (PASTA): pasta-server's C API, included by llama.h inside its extern "C" block
// (pasta-server's own file; implemented in src/llama-steering.cpp).

    // Attention steering (PASTA). For sequence seq_id, add `bias` to the pre-softmax attention scores
    // (after kq_scale and softcap) of the KV positions in `ranges` (n_ranges [start, end) pairs,
    // sorted, disjoint), in the query heads set in `head_mask` (n_layer*n_head_max bytes, 1 = steered,
    // layer-major). Takes effect at the next llama_decode; safe to call while a decode is running.
    // Returns 0 on success, -1 on invalid arguments, -2 when this context cannot be steered.
    LLAMA_API int32_t llama_steering_set(
            struct llama_context * ctx,
                    llama_seq_id   seq_id,
                           float   bias,
                   const int32_t * ranges,
                         int32_t   n_ranges,
                   const uint8_t * head_mask,
                         int32_t   n_head_mask);

    // Stop steering seq_id (seq_id < 0: every sequence). Takes effect at the next llama_decode.
    LLAMA_API void llama_steering_clear(struct llama_context * ctx, llama_seq_id seq_id);

    // Number of query heads of layer il (-1 if out of range). head_mask rows are max over layers wide.
    LLAMA_API int32_t llama_steering_n_head(const struct llama_context * ctx, int32_t il);

    // NULL when this context can be steered, otherwise why not (decided once, when the context is created).
    LLAMA_API const char * llama_steering_unsupported_reason(const struct llama_context * ctx);

    // True when a bias added to every KV position of a query leaves its attention unchanged (softmax
    // shift invariance); false for models with attention sinks, whose sink logit takes no bias.
    LLAMA_API bool llama_steering_shift_invariant(const struct llama_context * ctx);

    // Attention diagnostics for seq_id, which llama_steering_set has steered (the next llama_steering_set
    // or llama_steering_clear of seq_id ends them): from the next llama_decode on, each output row of the
    // sequence records, for every query head of every steered layer, the share of that head's attention
    // on the KV positions in `ranges` (n_ranges [start, end) pairs, sorted, disjoint), with the
    // sequence's steering and without it. Computed in F32 from the real scores, also under flash
    // attention. Returns 0 on success, -1 on invalid arguments or a sequence that is not steered.
    LLAMA_API int32_t llama_steering_set_diagnostics(
            struct llama_context * ctx,
                    llama_seq_id   seq_id,
                   const int32_t * ranges,
                         int32_t   n_ranges);

    // Target-share steering for seq_id, which llama_steering_set has steered (the next llama_steering_set
    // or llama_steering_clear of seq_id ends it): from the next llama_decode on, for each steered head and
    // query row, the bias on the sequence's `ranges` is chosen from that head's unsteered attention so that
    // the KV positions in `emphasis` (n_ranges [start, end) pairs, sorted, disjoint) get at least `share`
    // (0 < share < 1) of the attention: none where they already have it, and never stronger than the bias
    // given to llama_steering_set (which must be < 0). Steered layers then take the F32 attention path.
    // Returns 0 on success, -1 on invalid arguments or a sequence that is not steered.
    LLAMA_API int32_t llama_steering_set_target_share(
            struct llama_context * ctx,
                    llama_seq_id   seq_id,
                           float   share,
                   const int32_t * emphasis,
                         int32_t   n_ranges);

    // The rows recorded for seq_id since the last call, oldest first, then forgets them. A row is
    // n_layer*n_head_max pairs [steered share, unsteered share], layer-major, NaN where the head's layer
    // was not steered in that decode. Copies at most n_rows_max rows into out (NULL when n_rows_max is 0);
    // returns the number of rows that were recorded.
    LLAMA_API int32_t llama_steering_take_diagnostics(
            struct llama_context * ctx,
                    llama_seq_id   seq_id,
                           float * out,
                         int32_t   n_rows_max);
