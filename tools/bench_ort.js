// bench_ort.js - times one ONNX graph with ONNX Runtime (npm onnxruntime-node, CPU) for `make bench`.
//
//   node tools/bench_ort.js --model FILE.onnx --input NAME=FILE.f32:D0,D1,... [--input ...]
//                           [--threads N] [--runs N] [--warmup N] [--json OUT]
//                           [--check NAME=FILE.f32]...
//
// Each input is a raw little-endian float32 file whose size must be exactly the product of the
// dims times 4 (tools/bench_peers.py writes them from the PyTorch reference's own tensors).
// --check compares the first n values of output NAME with the n float32 values of FILE (the
// reference's own output, or its first rows) and fails when the largest difference exceeds
// 1e-3 of the largest reference magnitude (plus 1e-4): the timed graph computes the right thing.
// The session uses N intra-op threads, 1 inter-op thread, sequential execution and every graph
// optimisation. Reports the session creation time, every run's time and the best run (ms);
// --json writes {"model", "ort_version", "threads", "load_ms", "runs_ms", "best_ms", "outputs",
// "checks": {NAME: {"n", "max_abs_diff", "max_abs_ref"}}}.
// onnxruntime-node is looked up in the normal places, then in $BENCH_NODE_DIR/node_modules and
// build/node/node_modules (tools/bench.sh installs it there with npm --ignore-scripts).
// Exit status 0 on success, 1 on failure with a one-line message on stderr, 2 on bad usage.
'use strict';

const fs = require('fs');
const path = require('path');

function usage(msg) {
    if (msg) process.stderr.write('bench_ort: ' + msg + '\n');
    process.stderr.write('usage: node tools/bench_ort.js --model FILE.onnx --input NAME=FILE.f32:D0,D1,.. ' +
                         '[--threads N] [--runs N] [--warmup N] [--json OUT] [--check NAME=FILE.f32]\n');
    process.exit(2);
}

function fail(msg) {
    process.stderr.write('bench_ort: ' + msg + '\n');
    process.exit(1);
}

function intArg(name, v, lo, hi) {
    if (!/^[0-9]+$/.test(v || '')) usage(name + ' wants an integer');
    const n = Number(v);
    if (n < lo || n > hi) usage(name + ' must be ' + lo + '..' + hi);
    return n;
}

function parseArgs(argv) {
    const a = {model: null, inputs: [], checks: [], threads: 2, runs: 1, warmup: 1, json: null};
    for (let i = 0; i < argv.length; i++) {
        const k = argv[i];
        const v = argv[i + 1];
        if (k === '--help' || k === '-h') {
            process.stdout.write('usage: node tools/bench_ort.js --model FILE.onnx --input NAME=FILE.f32:D0,D1,.. ' +
                                 '[--threads N] [--runs N] [--warmup N] [--json OUT] [--check NAME=FILE.f32]\n');
            process.exit(0);
        }
        if (v === undefined) usage('option ' + k + ' needs a value');
        i++;
        if (k === '--model') a.model = v;
        else if (k === '--threads') a.threads = intArg(k, v, 1, 256);
        else if (k === '--runs') a.runs = intArg(k, v, 1, 1000);
        else if (k === '--warmup') a.warmup = intArg(k, v, 0, 1000);
        else if (k === '--json') a.json = v;
        else if (k === '--check') {
            const m = /^([A-Za-z0-9_.:-]+?)=(.+)$/.exec(v);
            if (!m) usage('--check wants NAME=FILE');
            a.checks.push({name: m[1], file: m[2]});
        } else if (k === '--input') {
            const m = /^([A-Za-z0-9_.:-]+?)=(.+):([0-9]+(?:,[0-9]+)*)$/.exec(v);
            if (!m) usage('--input wants NAME=FILE:D0,D1,..');
            const dims = m[3].split(',').map(Number);
            if (dims.some((d) => d < 1 || d > 1 << 20)) usage('--input dims must be 1..' + (1 << 20));
            a.inputs.push({name: m[1], file: m[2], dims: dims});
        } else usage('unknown option ' + k);
    }
    if (!a.model) usage('--model is required');
    if (!a.inputs.length) usage('at least one --input is required');
    return a;
}

function loadOrt() {
    const tries = ['onnxruntime-node'];
    if (process.env.BENCH_NODE_DIR) tries.push(path.resolve(process.env.BENCH_NODE_DIR, 'node_modules', 'onnxruntime-node'));
    tries.push(path.resolve(__dirname, '..', 'build', 'node', 'node_modules', 'onnxruntime-node'));
    for (const t of tries) {
        try {
            return {ort: require(t), where: t};
        } catch (e) {
            if (e.code !== 'MODULE_NOT_FOUND') fail('loading ' + t + ': ' + e.message);
        }
    }
    fail('onnxruntime-node not found (tools/bench.sh installs it into build/node)');
}

function readInput(ort, inp) {
    const n = inp.dims.reduce((p, d) => p * d, 1);
    let st;
    try {
        st = fs.statSync(inp.file);
    } catch (e) {
        fail(inp.file + ': ' + e.message);
    }
    if (!st.isFile() || st.size !== n * 4)
        fail(inp.file + ': ' + st.size + ' bytes, want ' + n * 4 + ' (float32 ' + inp.dims.join('x') + ')');
    const buf = fs.readFileSync(inp.file);
    // A Float32Array view needs a 4-byte aligned offset; small files may come from Node's pool.
    const ab = buf.byteOffset % 4 === 0 ? buf.buffer : buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
    const off = buf.byteOffset % 4 === 0 ? buf.byteOffset : 0;
    const data = new Float32Array(ab, off, n);
    for (let i = 0; i < n; i += 4099)
        if (!Number.isFinite(data[i])) fail(inp.file + ': non-finite value at element ' + i);
    return new ort.Tensor('float32', data, inp.dims);
}

async function main() {
    const a = parseArgs(process.argv.slice(2));
    const {ort} = loadOrt();
    const version = (ort.env && ort.env.versions && ort.env.versions.node) || 'unknown';
    const feeds = {};
    for (const inp of a.inputs) feeds[inp.name] = readInput(ort, inp);
    const opts = {
        executionProviders: ['cpu'],
        intraOpNumThreads: a.threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
    };
    let t0 = process.hrtime.bigint();
    let sess;
    try {
        sess = await ort.InferenceSession.create(a.model, opts);
    } catch (e) {
        fail(a.model + ': ' + e.message);
    }
    const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;
    for (const name of sess.inputNames)
        if (!(name in feeds)) fail(a.model + ': graph input "' + name + '" not given (--input ' + name + '=...)');
    const times = [];
    let outputs = {};
    let last = null;
    for (let k = 0; k < a.warmup + a.runs; k++) {
        t0 = process.hrtime.bigint();
        let res;
        try {
            res = await sess.run(feeds);
        } catch (e) {
            fail(a.model + ': run: ' + e.message);
        }
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (k >= a.warmup) times.push(ms);
        outputs = {};
        for (const name of Object.keys(res)) outputs[name] = res[name].dims;
        last = res;
    }
    const checks = {};
    for (const c of a.checks) {
        if (!last[c.name]) fail('--check: no output "' + c.name + '"');
        const got = last[c.name].data;
        let buf;
        try {
            buf = fs.readFileSync(c.file);
        } catch (e) {
            fail(c.file + ': ' + e.message);
        }
        const n = Math.floor(buf.length / 4);
        if (buf.length % 4 || n < 1 || n > got.length)
            fail(c.file + ': ' + buf.length + ' bytes, want 4..' + got.length * 4 + ' (a multiple of 4)');
        let diff = 0;
        let ref = 0;
        for (let i = 0; i < n; i++) {
            const r = buf.readFloatLE(i * 4);
            ref = Math.max(ref, Math.abs(r));
            diff = Math.max(diff, Math.abs(r - got[i]));
        }
        if (!(diff <= 1e-3 * ref + 1e-4))
            fail(c.name + ' differs from ' + c.file + ': max |diff| ' + diff + ', max |ref| ' + ref);
        checks[c.name] = {n: n, max_abs_diff: diff, max_abs_ref: ref};
    }
    const out = {
        model: a.model,
        ort_version: version,
        threads: a.threads,
        load_ms: loadMs,
        warmup: a.warmup,
        runs_ms: times,
        best_ms: Math.min(...times),
        outputs: outputs,
        checks: checks,
    };
    process.stdout.write(path.basename(a.model) + ': ORT ' + version + ', ' + a.threads + ' threads, load ' +
                         loadMs.toFixed(0) + ' ms, best of ' + a.runs + ' runs ' + out.best_ms.toFixed(1) + ' ms' +
                         Object.keys(checks)
                             .map((k) => ', ' + k + ' max |diff| ' + checks[k].max_abs_diff.toExponential(1) + ' of ' +
                                         checks[k].max_abs_ref.toExponential(1))
                             .join('') +
                         '\n');
    if (a.json) {
        try {
            fs.writeFileSync(a.json, JSON.stringify(out, null, 1) + '\n');
        } catch (e) {
            fail(a.json + ': ' + e.message);
        }
    }
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
