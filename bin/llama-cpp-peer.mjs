// llama.cpp on the CPU through node-llama-cpp's prebuilt binaries: the GGUF peer of `ropeway export --format gguf`.
// Run it through bin/llama-cpp-peer, which installs the package on first use. Every command prints one JSON object.
//
//   logits   --model <file.gguf> --ids <json array | @file>   the logits after every token (float32 KV cache)
//   tokenize --model <file.gguf> --text-file <path>           the ids llama.cpp's own tokenizer gives (no BOS)
//   generate --model <file.gguf> --ids <json | @file> --n <k> the greedy continuation, k tokens
//   info     --model <file.gguf>                              what llama.cpp read: vocabulary, context, BOS / EOS
//   bench    --model <file.gguf> --contexts 1024,4096 [--tokens 64] [--threads 2] [--kv f16|f32] [--repeat 1]
//            prefill of each context (random ids, in batches of 512) and greedy decode steps after it: tokens/s
import {readFileSync} from "node:fs";
import {pathToFileURL} from "node:url";

function fail(message) {
    process.stderr.write("llama-cpp-peer: " + message + "\n");
    process.exit(2);
}

const [command, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i += 2) {
    if (!rest[i].startsWith("--") || i + 1 >= rest.length) fail("options come as --name value pairs, got '" + rest[i] + "'");
    opts[rest[i].slice(2)] = rest[i + 1];
}
const need = name => opts[name] ?? fail(command + " needs --" + name);
const ids = () => {
    const raw = need("ids");
    const parsed = JSON.parse(raw.startsWith("@") ? readFileSync(raw.slice(1), "utf8") : raw);
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every(Number.isInteger)) fail("--ids is not a non-empty array of token ids");
    return parsed;
};
if (!["logits", "tokenize", "generate", "info", "bench"].includes(command)) fail("commands: logits, tokenize, generate, info, bench");

const {getLlama} = await import(pathToFileURL(process.env.LLAMA_CPP_PEER_PACKAGE ?? fail("run it through bin/llama-cpp-peer")).href);
const threads = parseInt(opts.threads ?? "2", 10);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error", maxThreads: threads});
const model = await llama.loadModel({modelPath: need("model")});

async function sequence(tokens) {
    const size = Math.max(32, tokens);
    const context = await model.createContext({
        contextSize: size, batchSize: size, sequences: 1,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", flashAttention: false,
    });
    return context.getSequence();
}

function dense(map) {
    const row = new Array(map.size).fill(null);
    for (const [token, value] of map) row[token] = value;
    return row;
}

if (command === "info") {
    console.log(JSON.stringify({vocab: model.fileInfo.metadata.tokenizer.ggml.tokens.length, trainContextSize: model.trainContextSize, bos: model.tokens.bos, eos: model.tokens.eos}));
} else if (command === "tokenize") {
    const text = readFileSync(need("text-file"), "utf8");
    console.log(JSON.stringify({ids: Array.from(model.tokenize(text, false))}));
} else if (command === "logits") {
    const input = ids();
    // The row of a call's last token comes back different from the row the same token gives with another token
    // after it (which matches Ropeway to float rounding), so one more token is evaluated and its row dropped.
    const seq = await sequence(input.length + 1);
    const out = await seq.controlledEvaluate([...input.map(t => [t, {generateNext: {logits: true}}]), input[input.length - 1]]);
    const logits = out.slice(0, input.length).map((o, i) => {
        if (!o?.next?.logits) fail("no logits came back for position " + i);
        return dense(o.next.logits);
    });
    console.log(JSON.stringify({ids: input, vocab: logits[0].length, logits}));
} else if (command === "bench") {
    const tokens = parseInt(opts.tokens ?? "64", 10), repeat = parseInt(opts.repeat ?? "1", 10);
    const kv = (opts.kv ?? "f16").toUpperCase();
    const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    for (const contextTokens of need("contexts").split(",").map(Number)) {
        for (let run = 0; run < repeat; run++) {
            const context = await model.createContext({
                contextSize: contextTokens + tokens + 8, batchSize: 512, sequences: 1, threads,
                experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv, flashAttention: false,
            });
            const seq = context.getSequence();
            let seed = 12345 + run;
            const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) % (vocab - 4) + 4;
            const prompt = Array.from({length: contextTokens}, random);
            let t0 = process.hrtime.bigint();
            const last = prompt.length - 1;
            const out = await seq.controlledEvaluate(prompt.map((t, i) => i === last ? [t, {generateNext: {token: true}}] : t));
            const prefillSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
            const next = out[last].next.token;
            t0 = process.hrtime.bigint();
            let k = 0;
            for await (const token of seq.evaluate([next], {temperature: 0})) if (++k >= tokens) break;
            const decodeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
            console.log(JSON.stringify({context: contextTokens, kv: kv.toLowerCase(), threads,
                prefill_tokens_per_s: contextTokens / prefillSeconds, decode_tokens_per_s: tokens / decodeSeconds,
                prefill_s: prefillSeconds, decode_s: decodeSeconds, tokens}));
            await context.dispose();
        }
    }
} else {
    // Greedy: the most likely token of each step's raw logits (the row before a dropped extra token, as above).
    const input = ids(), n = parseInt(need("n"), 10);
    const seq = await sequence(input.length + n + 1);
    const generated = [];
    let next = input;
    for (let k = 0; k < n; k++) {
        const last = next.length - 1;
        const out = await seq.controlledEvaluate([...next.map((t, i) => i === last ? [t, {generateNext: {logits: true}}] : t), next[last]]);
        await seq.eraseContextTokenRanges([{start: seq.nextTokenIndex - 1, end: seq.nextTokenIndex}]);
        let best = -1, bestLogit = -Infinity;
        for (const [token, logit] of out[last].next.logits) if (logit > bestLogit || (logit === bestLogit && token < best)) [best, bestLogit] = [token, logit];
        generated.push(best);
        next = [best];
    }
    console.log(JSON.stringify({ids: input, generated}));
}
process.exit(0);
