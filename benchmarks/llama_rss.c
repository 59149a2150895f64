/* llama.cpp itself, without Python: the memory reference for benchmarks/memory.py.
 *
 * Loads a model through llama.cpp's C API with the app's settings (n_ctx, batch and ubatch,
 * flash attention, key cache type, threads, extra buffer types; the model file mmapped, as
 * llama.cpp does by default and as the app leaves it), evaluates `-d` prompt tokens (so the KV
 * cache holds as many cells as the app's), generates `-n` tokens greedily, then prints one JSON
 * line and waits for a line (or EOF) on stdin, so its RSS can be read from outside while
 * everything is still allocated. Built by benchmarks/build_llama_rss.sh against the llama.cpp
 * that llama-cpp-python vendors.
 *
 *   llama-rss -m MODEL -c 4096 -b 512 -ub 128 -fa off -ctk q8_0 [-ctv f16] -t 1 -tb 2 -repack 1 -d 3800 -n 16
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char * text, void * user_data) {
    (void) level; (void) text; (void) user_data;
}

static int fail(const char * what) {
    fprintf(stderr, "llama-rss: %s\n", what);
    return 1;
}

int main(int argc, char ** argv) {
    const char * model_path = NULL;
    const char * flash = "off";
    const char * key_type = "f16", * value_type = "f16";
    int n_ctx = 4096, n_batch = 512, n_ubatch = 512, threads = 1, threads_batch = 1, repack = 1;
    int depth = 0, n_predict = 16;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char * flag = argv[i], * value = argv[i + 1];
        if (!strcmp(flag, "-m")) model_path = value;
        else if (!strcmp(flag, "-c")) n_ctx = atoi(value);
        else if (!strcmp(flag, "-b")) n_batch = atoi(value);
        else if (!strcmp(flag, "-ub")) n_ubatch = atoi(value);
        else if (!strcmp(flag, "-fa")) flash = value;
        else if (!strcmp(flag, "-ctk")) key_type = value;
        else if (!strcmp(flag, "-ctv")) value_type = value;
        else if (!strcmp(flag, "-t")) threads = atoi(value);
        else if (!strcmp(flag, "-tb")) threads_batch = atoi(value);
        else if (!strcmp(flag, "-repack")) repack = atoi(value);
        else if (!strcmp(flag, "-d")) depth = atoi(value);
        else if (!strcmp(flag, "-n")) n_predict = atoi(value);
        else return fail("unknown flag");
    }
    if (!model_path) return fail("give -m MODEL");
    if (depth + n_predict >= n_ctx) return fail("-d plus -n must stay below -c");

    llama_log_set(quiet, NULL);
    llama_backend_init();

    struct llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    mparams.use_extra_bufts = repack != 0;
    struct llama_model * model = llama_model_load_from_file(model_path, mparams);
    if (!model) return fail("the model did not load");

    struct llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_ctx;
    cparams.n_batch = n_batch < n_ctx ? n_batch : n_ctx;
    cparams.n_ubatch = n_ubatch < (int) cparams.n_batch ? n_ubatch : (int) cparams.n_batch;
    cparams.flash_attn_type = !strcmp(flash, "on") ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                            : !strcmp(flash, "off") ? LLAMA_FLASH_ATTN_TYPE_DISABLED : LLAMA_FLASH_ATTN_TYPE_AUTO;
    cparams.type_k = !strcmp(key_type, "q8_0") ? GGML_TYPE_Q8_0 : GGML_TYPE_F16;
    cparams.type_v = !strcmp(value_type, "q8_0") ? GGML_TYPE_Q8_0 : GGML_TYPE_F16; /* q8_0 needs flash attention */
    cparams.n_threads = threads;
    cparams.n_threads_batch = threads_batch;
    cparams.no_perf = false;
    cparams.swa_full = true;
    struct llama_context * ctx = llama_init_from_model(model, cparams);
    if (!ctx) return fail("the context was not created");
    const struct llama_vocab * vocab = llama_model_get_vocab(model);

    /* The prompt: one sentence's tokens repeated up to `depth` (what fills the cache does not matter). */
    const char * sentence = "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun. ";
    llama_token piece[64];
    int n_piece = llama_tokenize(vocab, sentence, (int32_t) strlen(sentence), piece, 64, false, false);
    if (n_piece <= 0) return fail("the sentence did not tokenize");
    llama_token * prompt = malloc(sizeof(llama_token) * (size_t) (depth > 0 ? depth : 1));
    for (int i = 0; i < depth; i++) prompt[i] = piece[i % n_piece];
    for (int offset = 0; offset < depth; offset += (int) cparams.n_batch) {
        int count = depth - offset < (int) cparams.n_batch ? depth - offset : (int) cparams.n_batch;
        if (llama_decode(ctx, llama_batch_get_one(prompt + offset, count))) return fail("the prompt failed");
    }

    struct llama_sampler * sampler = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(sampler, llama_sampler_init_greedy());
    llama_token token = depth > 0 ? prompt[depth - 1] : piece[0];
    if (depth == 0 && llama_decode(ctx, llama_batch_get_one(&token, 1))) return fail("the first token failed");
    int generated = 0;
    for (; generated < n_predict; generated++) {
        token = llama_sampler_sample(sampler, ctx, -1);
        if (llama_decode(ctx, llama_batch_get_one(&token, 1))) return fail("a decode failed");
    }

    printf("{\"pid\": %d, \"prompt_tokens\": %d, \"generated\": %d, \"n_ctx\": %u}\n",
           (int) getpid(), depth, generated, llama_n_ctx(ctx));
    fflush(stdout);
    char line[16];
    (void) !fgets(line, sizeof line, stdin); /* hold everything until told to go */

    llama_sampler_free(sampler);
    free(prompt);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
