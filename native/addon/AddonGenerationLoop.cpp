// pasta-server: a native generation loop for node-llama-cpp's AddonContext.
//
// Why: node-llama-cpp decodes one token per JavaScript round trip (queue a batch, decode on a libuv
// worker, sample on another, resolve promises), which costs more than the decode itself on small and
// mid-size models. Here one thread per context owns every llama_decode while jobs run: each step
// puts the next token of every generating sequence and chunks of pending prompts into one batch
// (continuous batching), decodes, samples with the request's own AddonSampler (the same code path as
// node-llama-cpp's sampleToken, so the tokens match), computes log-probs only when asked, and hands
// tokens to JavaScript in batches through a thread-safe function. JavaScript never waits on it per
// token; cancellation takes effect before the next decode.
//
// While the loop runs nothing else may decode on, or edit the KV cache of, this context:
// pasta-server's engine sends every decode through it (a job's `keep` trims the sequence's cache on
// the loop's thread, which decides how much of it is still exact: reusablePositions).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "AddonContext.h"
#include "AddonSampler.h"
#include "PastaNative.h"
#include "llama.h"

namespace {

struct Job {
    int32_t id = 0;
    llama_seq_id seq = 0;
    int32_t keep = 0;                 // leading positions of `input` the sequence's cache may still hold
    llama_seq_id copyFrom = -1;       // >= 0: the sequence's cache starts as a copy of this one's (n > 1)
    std::vector<llama_token> input;   // the sequence from position 0; evaluated from what is kept on
    AddonSampler* sampler = nullptr;  // null: a scoring job (log-prob of each next input token)
    int32_t maxTokens = 0;
    int32_t minTokens = 0;            // end-of-generation tokens cannot be sampled before this many tokens
    int64_t samplingBudgetUs = 0;     // > 0: a token whose sampling takes longer ends the job ("overbudget")
    int32_t topLogprobs = -1;         // -1: no log-probs; k >= 0: the token's and the k most likely
    int32_t scoreFrom = 1;            // scoring: the first input index whose log-prob is reported
    bool diagnostics = false;         // report the attention diagnostics row of each sampling step

    bool started = false;
    bool delivered = false;           // some output has gone to JavaScript
    bool cancelled = false;
    bool finished = false;
    int32_t reused = 0;               // positions kept from the cache (at most `keep`)
    size_t evaluated = 0;             // input tokens in the KV cache
    int32_t kv = 0;                   // the sequence's KV positions
    llama_token pending = -1;         // sampled and not yet evaluated
    llama_token stepToken = -1;       // the sampled token in the current batch (-1: none)
    int32_t generated = 0;
    int32_t inBatch = 0;              // tokens of this job in the current batch
    int32_t inputInBatch = 0;         // of which from `input`
    // outputs of the current batch: {batch index, input index (scoring) or -1 (the sampled token)}
    std::vector<std::pair<int32_t, int32_t>> outputs;
};

struct Event {
    int32_t id = 0;
    std::vector<int32_t> tokens;
    std::vector<double> logprobs;     // per token: [logprob, id0, logprob0, ...] (1 + 2k values)
    std::vector<float> attention;     // per sampling step: a diagnostics row (llama_steering_take_diagnostics)
    bool done = false;
    std::string finish;               // "stop" | "length" | "cancelled" | "error" | "overbudget"
    std::string error;
    int32_t kvTokens = -1;            // the sequence's KV positions once done; -1: unknown (failed decode)
    int32_t reused = 0;               // leading positions taken from the cache instead of evaluated
    AddonSampler* sampler = nullptr;  // released on the JavaScript thread once done
};

// Events waiting for the JavaScript thread. Shared with queued thread-safe calls, which may run
// after the loop is gone.
struct Outbox {
    std::mutex mutex;
    std::vector<Event> events;
    bool scheduled = false;           // a call to JavaScript is queued and will take everything
    Napi::ThreadSafeFunction tsfn;
    int32_t activeJobs = 0;           // JavaScript thread only: the function keeps Node alive while > 0
};

void deliver(Napi::Env env, Napi::Function callback, const std::shared_ptr<Outbox>& box) {
    std::vector<Event> events;
    {
        std::lock_guard<std::mutex> lock(box->mutex);
        events.swap(box->events);
        box->scheduled = false;
    }
    Napi::Array list = Napi::Array::New(env, events.size());
    for (size_t i = 0; i < events.size(); i++) {
        Event& e = events[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("id", e.id);
        Napi::Int32Array tokens = Napi::Int32Array::New(env, e.tokens.size());
        std::copy(e.tokens.begin(), e.tokens.end(), tokens.Data());
        o.Set("tokens", tokens);
        if (!e.logprobs.empty()) {
            Napi::Float64Array lp = Napi::Float64Array::New(env, e.logprobs.size());
            std::copy(e.logprobs.begin(), e.logprobs.end(), lp.Data());
            o.Set("logprobs", lp);
        }
        if (!e.attention.empty()) {
            Napi::Float32Array rows = Napi::Float32Array::New(env, e.attention.size());
            std::copy(e.attention.begin(), e.attention.end(), rows.Data());
            o.Set("attention", rows);
        }
        o.Set("done", e.done);
        if (e.done) {
            o.Set("finish", e.finish);
            if (!e.error.empty()) o.Set("error", e.error);
            o.Set("kvTokens", e.kvTokens);
            o.Set("reused", e.reused);
            if (e.sampler != nullptr) e.sampler->Unref();
            if (--box->activeJobs == 0) box->tsfn.Unref(env);
        }
        list.Set(i, o);
    }
    callback.Call({list});
}

}  // namespace

class PastaGenerationLoop {
    public:
        PastaGenerationLoop(llama_context* ctx, Napi::Env env, Napi::Function onEvents, std::chrono::microseconds deliveryInterval)
            : ctx(ctx), box(std::make_shared<Outbox>()), deliveryInterval(deliveryInterval) {
            box->tsfn = Napi::ThreadSafeFunction::New(env, onEvents, "pastaGenerationLoop", 0, 1);
            box->tsfn.Unref(env);  // idle: do not keep Node alive
            nSwa = llama_model_n_swa(llama_get_model(ctx));
            int32_t nHeadMax = 0;
            const int32_t nLayer = llama_model_n_layer(llama_get_model(ctx));
            for (int32_t il = 0; il < nLayer; il++) nHeadMax = std::max(nHeadMax, llama_steering_n_head(ctx, il));
            diagnosticsStride = (size_t)nLayer * nHeadMax * 2;
            thread = std::thread([this] { run(); });
        }

        // JavaScript thread. Jobs submitted together join the same first batch. False once stopped.
        bool submit(Napi::Env env, std::vector<std::unique_ptr<Job>>& jobs) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (stopping) return false;
                for (auto& job : jobs) incoming.push_back(std::move(job));
            }
            if (box->activeJobs == 0) box->tsfn.Ref(env);
            box->activeJobs += (int32_t)jobs.size();
            wake.notify_one();
            return true;
        }

        void cancel(int32_t id) {
            {
                std::lock_guard<std::mutex> lock(mutex);
                cancels.push_back(id);
            }
            wake.notify_one();
        }

        void stop() {
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (stopping) return;
                stopping = true;
            }
            wake.notify_one();
            if (thread.joinable()) thread.join();
            box->tsfn.Release();
        }

    private:
        llama_context* ctx;
        int32_t nSwa = 0;  // the model's sliding-window size; 0: no sliding-window layers
        size_t diagnosticsStride = 0;  // floats per diagnostics row
        std::shared_ptr<Outbox> box;
        std::thread thread;
        std::mutex mutex;
        std::condition_variable wake;
        std::vector<std::unique_ptr<Job>> incoming;  // guarded by mutex
        std::vector<int32_t> cancels;                // guarded by mutex
        bool stopping = false;                       // guarded by mutex

        std::vector<Event> staged;  // loop thread: this step's events
        // Each call into JavaScript wakes its thread, which on a small machine costs about as much CPU
        // as the JavaScript work for a token: tokens are handed over at most this often, except a
        // job's first output and its end, which go at once.
        const std::chrono::microseconds deliveryInterval;
        std::chrono::steady_clock::time_point lastDelivery{};
        bool urgent = false;        // loop thread: staged holds a first output or an end
        bool undelivered = false;   // loop thread: the outbox holds events no call will take

        Event& eventFor(Job& job) {
            if (!job.delivered) urgent = job.delivered = true;
            for (auto& e : staged) if (e.id == job.id) return e;
            staged.push_back(Event{});
            staged.back().id = job.id;
            return staged.back();
        }

        void finish(Job& job, const char* reason, const std::string& error = "") {
            Event& e = eventFor(job);
            e.done = true;
            e.finish = reason;
            e.error = error;
            e.kvTokens = job.kv;
            e.reused = job.reused;
            e.sampler = job.sampler;
            job.finished = true;
            urgent = true;
        }

        void flush() {
            if (staged.empty() && !undelivered) return;
            const auto now = std::chrono::steady_clock::now();
            bool call = false;
            {
                std::lock_guard<std::mutex> lock(box->mutex);
                for (auto& e : staged) {
                    // JavaScript is behind: merge into the event it has not taken yet
                    auto waiting = std::find_if(box->events.begin(), box->events.end(),
                                                [&](const Event& w) { return w.id == e.id && !w.done; });
                    if (waiting == box->events.end()) {
                        box->events.push_back(std::move(e));
                        continue;
                    }
                    waiting->tokens.insert(waiting->tokens.end(), e.tokens.begin(), e.tokens.end());
                    waiting->logprobs.insert(waiting->logprobs.end(), e.logprobs.begin(), e.logprobs.end());
                    waiting->attention.insert(waiting->attention.end(), e.attention.begin(), e.attention.end());
                    waiting->done = e.done;
                    waiting->finish = e.finish;
                    waiting->error = e.error;
                    waiting->kvTokens = e.kvTokens;
                    waiting->reused = e.reused;
                    waiting->sampler = e.sampler;
                }
                // not yet due: the events wait in the outbox for a later step's flush
                call = !box->scheduled && (urgent || now - lastDelivery >= deliveryInterval);
                if (call) box->scheduled = true;
                undelivered = !call && !box->scheduled;
            }
            staged.clear();
            if (call) {
                urgent = false;
                lastDelivery = now;
            }
            if (call) {
                std::shared_ptr<Outbox> keep = box;
                box->tsfn.NonBlockingCall([keep](Napi::Env env, Napi::Function callback) { deliver(env, callback, keep); });
            }
        }

        void appendLogprobs(Event& e, const Job& job, int32_t batchIndex, llama_token token, int32_t nVocab) {
            const size_t at = e.logprobs.size();
            e.logprobs.resize(at + 1 + 2 * (size_t)job.topLogprobs);
            pastaLogprobs(llama_get_logits_ith(ctx, batchIndex), nVocab, job.topLogprobs, token, e.logprobs.data() + at);
        }

        void run() {
            const int32_t nBatch = (int32_t)llama_n_batch(ctx);
            const llama_vocab* vocab = llama_model_get_vocab(llama_get_model(ctx));
            const int32_t nVocab = llama_vocab_n_tokens(vocab);
            batch = llama_batch_init(nBatch, 0, 1);
            std::vector<std::unique_ptr<Job>> active;

            for (;;) {
                {
                    std::unique_lock<std::mutex> lock(mutex);
                    wake.wait(lock, [&] { return stopping || !incoming.empty() || !cancels.empty() || !active.empty(); });
                    if (stopping) break;
                    for (auto& job : incoming) active.push_back(std::move(job));
                    incoming.clear();
                    for (int32_t id : cancels) {
                        for (auto& job : active) if (job->id == id) job->cancelled = true;
                    }
                    cancels.clear();
                }

                for (auto& job : active) {
                    if (job->cancelled) {
                        finish(*job, "cancelled");
                    } else if (!job->started) {
                        job->started = true;
                        if (job->copyFrom >= 0) copyCache(*job);
                        const int32_t kept = reusablePositions(*job);
                        if (kept < 0) {
                            job->kv = -1;
                            finish(*job, "error", "could not clear the sequence's KV cache");
                            continue;
                        }
                        job->kv = job->reused = kept;
                        job->evaluated = (size_t)kept;
                        if (job->sampler != nullptr && job->maxTokens <= 0) finish(*job, "length");
                        else if (job->input.empty()) finish(*job, "stop");
                    }
                }
                active.erase(std::remove_if(active.begin(), active.end(), [](const auto& job) { return job->finished; }), active.end());

                // the next token of every generating sequence first, then prompt chunks in arrival order
                batch.n_tokens = 0;
                for (auto& job : active) {
                    job->inBatch = 0;
                    job->inputInBatch = 0;
                    job->stepToken = job->pending;
                    job->pending = -1;
                    job->outputs.clear();
                    if (job->stepToken >= 0) add(*job, job->stepToken, true, -1);
                }
                for (auto& job : active) {
                    while (job->evaluated + job->inputInBatch < job->input.size() && batch.n_tokens < nBatch) {
                        addInput(*job, (int32_t)(job->evaluated + job->inputInBatch++));
                    }
                }
                if (batch.n_tokens == 0) {
                    flush();
                    continue;
                }

                std::vector<Job*> inBatch;
                for (auto& job : active) if (job->inBatch > 0) inBatch.push_back(job.get());
                const std::string error = decode(batch);
                if (error.empty()) {
                    for (Job* job : inBatch) completeStep(*job, vocab, nVocab);
                } else if (inBatch.size() == 1) {
                    failStep(*inBatch[0], error);
                } else {
                    // one sequence's failure must not fail its neighbours: each job's part again, alone
                    for (Job* job : inBatch) {
                        if (!rollBack(*job)) {
                            failStep(*job, error);
                            continue;
                        }
                        batch.n_tokens = 0;
                        readd(*job);
                        const std::string alone = decode(batch);
                        if (alone.empty()) completeStep(*job, vocab, nVocab);
                        else failStep(*job, alone);
                    }
                }
                active.erase(std::remove_if(active.begin(), active.end(), [](const auto& job) { return job->finished; }), active.end());
                flush();
            }

            for (auto& job : active) finish(*job, "error", "the context was disposed");
            {
                std::lock_guard<std::mutex> lock(mutex);
                for (auto& job : incoming) finish(*job, "error", "the context was disposed");
                incoming.clear();
            }
            flush();
            llama_batch_free(batch);
        }

        llama_batch batch{};  // loop thread

        void add(Job& job, llama_token token, bool output, int32_t inputIndex) {
            const int32_t i = batch.n_tokens++;
            batch.token[i] = token;
            batch.pos[i] = job.kv + job.inBatch++;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = job.seq;
            batch.logits[i] = output;
            if (output) job.outputs.emplace_back(i, inputIndex);
        }

        void addInput(Job& job, int32_t index) {
            const bool last = index + 1 == (int32_t)job.input.size();
            // scoring: logits only where they predict a reported token (the vocabulary projection costs)
            const bool output = job.sampler == nullptr ? !last && index + 1 >= job.scoreFrom : last;
            add(job, job.input[index], output, index);
        }

        // The job's part of the failed batch, again: its sampled token, then the same input tokens.
        void readd(Job& job) {
            const int32_t inputs = job.inputInBatch;
            job.inBatch = 0;
            job.outputs.clear();
            if (job.stepToken >= 0) add(job, job.stepToken, true, -1);
            for (int32_t i = 0; i < inputs; i++) addInput(job, (int32_t)job.evaluated + i);
        }

        // "" on success. An exception (a compute buffer that cannot be allocated, ...) fails the
        // batch like an error code: it must never reach the thread's top, which would end the process.
        std::string decode(llama_batch& b) {
            try {
                const int32_t rc = llama_decode(ctx, b);
                if (rc == 0) return "";
                if (rc == 1) return "could not find a KV slot for the batch (the context is full)";
                return "llama_decode failed (" + std::to_string(rc) + ")";
            } catch (const std::exception& err) {
                return std::string("llama_decode failed: ") + err.what();
            } catch (...) {
                return "llama_decode failed";
            }
        }

        // After a failed decode: drops what the batch may have left of this job in the cache (its
        // earlier ubatches stay when a later one fails). False when that cannot be done exactly.
        bool rollBack(Job& job) {
            dropDiagnostics(job);
            return llama_memory_seq_rm(llama_get_memory(ctx), job.seq, job.kv, -1);
        }

        void completeStep(Job& job, const llama_vocab* vocab, int32_t nVocab) {
            job.kv += job.inBatch;
            job.evaluated += job.inputInBatch;
            if (job.sampler == nullptr) score(job, nVocab);
            else if (!job.outputs.empty()) {
                if (job.diagnostics) takeDiagnostics(job);
                sample(job, vocab, nVocab);
            }
        }

        // The row of the output that is sampled from (the batch's last output of the job).
        void takeDiagnostics(Job& job) {
            std::vector<float> rows(job.outputs.size() * diagnosticsStride);
            const int32_t n = llama_steering_take_diagnostics(ctx, job.seq, rows.data(), (int32_t)job.outputs.size());
            Event& e = eventFor(job);
            const size_t at = e.attention.size();
            e.attention.resize(at + diagnosticsStride, NAN);  // no row (never expected): NaN, "not computed"
            if (n == (int32_t)job.outputs.size()) {
                std::copy_n(rows.end() - diagnosticsStride, diagnosticsStride, e.attention.begin() + at);
            }
        }

        // What a failed decode recorded is not the job's (its part is decoded again, or it fails).
        void dropDiagnostics(Job& job) {
            if (job.diagnostics) llama_steering_take_diagnostics(ctx, job.seq, nullptr, 0);
        }

        void failStep(Job& job, const std::string& error) {
            dropDiagnostics(job);
            job.kv = -1;  // some of the batch may be in the cache
            finish(job, "error", error);
        }

        // Several choices of one prompt: the prompt is evaluated on one sequence, whose cache every
        // other choice's sequence starts from (then trimmed to its `keep`). Here, between decodes,
        // no decode can race the copy; across KV streams llama.cpp copies whole buffers (only
        // p0 = p1 = -1 is allowed) at the next decode's memory update.
        void copyCache(const Job& job) {
            llama_memory_t mem = llama_get_memory(ctx);
            llama_memory_seq_rm(mem, job.seq, 0, -1);
            llama_memory_seq_cp(mem, job.copyFrom, job.seq, -1, -1);
        }

        // Trims the sequence's cache to the job's `keep` positions, or to none when what is left would
        // not be exact: a sliding-window layer evicts cells older than its window (plus a ubatch), so a
        // query at `keep` needs the window before it still cached (llama-server's check, via
        // llama_memory_seq_pos_min); a recurrent state cannot be rolled back part of the way. Returns
        // the positions kept, -1 if even clearing failed.
        int32_t reusablePositions(const Job& job) {
            llama_memory_t mem = llama_get_memory(ctx);
            // the last input token is always evaluated: its logits are the job's first output
            int32_t keep = std::max(0, std::min<int32_t>(job.keep, (int32_t)job.input.size() - 1));
            if (keep > 0 && !llama_memory_seq_rm(mem, job.seq, keep, -1)) keep = 0;
            if (keep > 0 && nSwa > 0) {
                const llama_pos posMin = llama_memory_seq_pos_min(mem, job.seq);
                if (posMin < 0 || posMin > std::max(0, keep - nSwa)) keep = 0;
            }
            if (keep == 0 && !llama_memory_seq_rm(mem, job.seq, 0, -1)) return -1;
            return keep;
        }

        void score(Job& job, int32_t nVocab) {
            Event& e = eventFor(job);
            for (const auto& [batchIndex, inputIndex] : job.outputs) {
                const llama_token next = job.input[inputIndex + 1];
                e.tokens.push_back(next);
                appendLogprobs(e, job, batchIndex, next, nVocab);
            }
            if (job.evaluated == job.input.size()) finish(job, "stop");
        }

        std::vector<bool> eog;  // loop thread: which tokens end a generation (filled on first use)

        // min_tokens / ignore_eos: the chain samples from the candidates with every end-of-generation
        // token removed. The server refuses these with a grammar, which the chain would skip here.
        void sampleWithoutEog(Job& job, const llama_vocab* vocab, int32_t batchIndex, llama_token_data_array& candidates) {
            if (eog.empty()) {
                const int32_t n = llama_vocab_n_tokens(vocab);
                eog.resize(n);
                for (int32_t t = 0; t < n; t++) eog[t] = llama_vocab_is_eog(vocab, t);
            }
            job.sampler->setTokenCandidates(ctx, batchIndex, candidates);
            for (size_t i = 0; i < candidates.size; i++) {
                const llama_token id = candidates.data[i].id;
                if (id >= 0 && (size_t)id < eog.size() && eog[id]) candidates.data[i].logit = -INFINITY;
            }
            llama_sampler_apply(job.sampler->chain, &candidates);
        }

        void sample(Job& job, const llama_vocab* vocab, int32_t nVocab) {
            const int32_t batchIndex = job.outputs.back().first;
            llama_token token = -1;
            const auto started = std::chrono::steady_clock::now();
            try {
                job.sampler->rebuildChainIfNeeded();
                llama_token_data_array candidates;
                if (job.generated < job.minTokens) sampleWithoutEog(job, vocab, batchIndex, candidates);
                else job.sampler->sample(ctx, batchIndex, candidates, false);
                if (candidates.size == 0 || candidates.selected < 0 || candidates.selected >= (int64_t)candidates.size) {
                    finish(job, "error", "sampling produced no token");
                    return;
                }
                token = candidates.data[candidates.selected].id;
                job.sampler->acceptToken(token);
            } catch (const std::exception& err) {
                finish(job, "error", std::string("sampling failed: ") + err.what());
                return;
            }
            // Sampling runs on this thread between decodes, so one costly sampler (a grammar whose parse
            // branches a lot) holds up every sequence: a job over its budget ends here, its token unused.
            const int64_t tookUs = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
            if (job.samplingBudgetUs > 0 && tookUs > job.samplingBudgetUs) {
                finish(job, "overbudget", std::to_string(tookUs / 1000) + " ms");
                return;
            }
            if (llama_vocab_is_eog(vocab, token)) {
                finish(job, "stop");
                return;
            }
            Event& e = eventFor(job);
            e.tokens.push_back(token);
            if (job.topLogprobs >= 0) appendLogprobs(e, job, batchIndex, token, nVocab);
            if (++job.generated >= job.maxTokens) finish(job, "length");
            else job.pending = token;
        }
};

void pastaStopGenerationLoop(AddonContext* context) {
    if (context->pastaGenerationLoop) context->pastaGenerationLoop->stop();
}

static bool ensureLoop(const Napi::CallbackInfo& info, AddonContext* self) {
    if (self->disposed || self->ctx == nullptr) {
        Napi::Error::New(info.Env(), "Context is disposed").ThrowAsJavaScriptException();
        return false;
    }
    if (!self->pastaGenerationLoop) {
        Napi::Error::New(info.Env(), "The generation loop is not started").ThrowAsJavaScriptException();
        return false;
    }
    return true;
}

// generationStart(onEvents: (events) => void, deliveryIntervalUs): starts the context's loop thread (once).
Napi::Value AddonContext::GenerationStart(const Napi::CallbackInfo& info) {
    if (disposed || ctx == nullptr) {
        Napi::Error::New(info.Env(), "Context is disposed").ThrowAsJavaScriptException();
        return info.Env().Undefined();
    }
    if (pastaGenerationLoop) {
        Napi::Error::New(info.Env(), "The generation loop is already started").ThrowAsJavaScriptException();
        return info.Env().Undefined();
    }
    const auto interval = std::chrono::microseconds(info[1].As<Napi::Number>().Int64Value());
    pastaGenerationLoop = std::make_shared<PastaGenerationLoop>(ctx, info.Env(), info[0].As<Napi::Function>(), interval);
    return info.Env().Undefined();
}

// generationSubmit(jobs: {id, sequenceId, keep, copyFrom?, tokens: Uint32Array, sampler?, maxTokens, minTokens?, samplingBudgetMs?,
//   topLogprobs, scoreFrom?, diagnostics?}[]):
// `tokens` is the sequence from position 0, of which the first `keep` may be taken from the cache
// (with copyFrom: from a copy of that sequence's cache);
// a scoring job (no sampler) reports the log-probs of tokens[scoreFrom...] (default 1: all but the first)
Napi::Value AddonContext::GenerationSubmit(const Napi::CallbackInfo& info) {
    if (!ensureLoop(info, this)) return info.Env().Undefined();
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<std::unique_ptr<Job>> jobs;
    for (uint32_t i = 0; i < list.Length(); i++) {
        Napi::Object options = list.Get(i).As<Napi::Object>();
        auto job = std::make_unique<Job>();
        job->id = options.Get("id").As<Napi::Number>().Int32Value();
        job->seq = options.Get("sequenceId").As<Napi::Number>().Int32Value();
        job->keep = options.Get("keep").As<Napi::Number>().Int32Value();
        if (options.Get("copyFrom").IsNumber()) job->copyFrom = options.Get("copyFrom").As<Napi::Number>().Int32Value();
        Napi::Uint32Array tokens = options.Get("tokens").As<Napi::Uint32Array>();
        job->input.assign(tokens.Data(), tokens.Data() + tokens.ElementLength());
        job->maxTokens = options.Get("maxTokens").As<Napi::Number>().Int32Value();
        if (options.Get("minTokens").IsNumber()) job->minTokens = options.Get("minTokens").As<Napi::Number>().Int32Value();
        if (options.Get("samplingBudgetMs").IsNumber())
            job->samplingBudgetUs = (int64_t)(options.Get("samplingBudgetMs").As<Napi::Number>().DoubleValue() * 1000);
        job->topLogprobs = options.Get("topLogprobs").As<Napi::Number>().Int32Value();
        if (options.Get("scoreFrom").IsNumber()) job->scoreFrom = options.Get("scoreFrom").As<Napi::Number>().Int32Value();
        job->diagnostics = options.Get("diagnostics").ToBoolean();
        if (options.Get("sampler").IsObject()) {
            job->sampler = Napi::ObjectWrap<AddonSampler>::Unwrap(options.Get("sampler").As<Napi::Object>());
        } else if (job->topLogprobs < 0) {
            job->topLogprobs = 0;  // scoring always reports the log-prob of each next token
        }
        jobs.push_back(std::move(job));
    }
    std::vector<AddonSampler*> samplers;
    for (auto& job : jobs) if (job->sampler != nullptr) samplers.push_back(job->sampler);
    if (!pastaGenerationLoop->submit(info.Env(), jobs)) {
        Napi::Error::New(info.Env(), "Context is disposed").ThrowAsJavaScriptException();
        return info.Env().Undefined();
    }
    for (AddonSampler* sampler : samplers) sampler->Ref();  // released once its job is done
    return info.Env().Undefined();
}

// generationCancel(id): the job ends before the loop's next decode, with finish "cancelled"
Napi::Value AddonContext::GenerationCancel(const Napi::CallbackInfo& info) {
    if (!ensureLoop(info, this)) return info.Env().Undefined();
    pastaGenerationLoop->cancel(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
}
