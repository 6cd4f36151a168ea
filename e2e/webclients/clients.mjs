// Runs third-party gRPC-Web clients against grpctap's bridge in front of the
// demo backend (grpctap.demo.v1.DemoService) and prints one JSON line per
// case: {"client", "case", "ok", "detail"}. Exits 1 when a case fails.
//
//   node clients.mjs --addr 127.0.0.1:8080 --client connect-web-binary
//
// Clients: connect-web-binary, connect-web-json (fetch), connect-node-h1,
// connect-node-h2, connect-node-h2-json (JSON, gzip), grpc-web-text, grpc-web-binary (the official client,
// driven without its code generator; XMLHttpRequest from xhr2).
import { parseArgs } from "node:util";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport as webTransport } from "@connectrpc/connect-web";
import { createGrpcWebTransport as nodeTransport, compressionGzip } from "@connectrpc/connect-node";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import grpcWeb from "grpc-web";
import xhr2 from "xhr2";
import {
  DemoService,
  EchoRequestSchema,
  EchoResponseSchema,
  CountdownRequestSchema,
  TickSchema,
} from "./gen/demo_pb.js";

const { values: args } = parseArgs({
  options: {
    addr: { type: "string" },
    client: { type: "string" },
    large: { type: "string", default: String(1 << 20) },
  },
});
if (!args.addr || !args.client) {
  console.error("usage: node clients.mjs --addr HOST:PORT --client NAME");
  process.exit(2);
}
const baseUrl = `http://${args.addr}`;
const largeSize = Number(args.large);

let failed = false;
function report(kase, ok, detail = "") {
  if (!ok) failed = true;
  console.log(JSON.stringify({ client: args.client, case: kase, ok, detail: String(detail) }));
}

async function run(kase, fn) {
  try {
    const detail = await fn();
    report(kase, true, detail ?? "");
  } catch (e) {
    report(kase, false, e?.stack ?? e);
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// Ticks arrive incrementally when the last came well after the first: the
// backend sends one per interval.
function checkIncremental(times, interval) {
  check(times.length === 3, `got ${times.length} ticks`);
  const spread = times[2] - times[0];
  check(spread >= interval * 1.25, `ticks arrived together (spread ${spread}ms): not flushed per message`);
  return `ticks at ${times.map((t) => Math.round(t)).join(", ")} ms`;
}

const interval = 400; // ms between Countdown ticks

// ---- connect (connect-web over fetch, connect-node over http/1.1 and h2) ----

async function connectSuite(transport, { clientStreaming, bidi }) {
  const client = createClient(DemoService, transport);

  await run("unary", async () => {
    let hdr;
    const res = await client.echo(
      { message: "hello", tags: ["a", "b"], labels: { k: "v" } },
      { headers: { "x-hello": "world" }, onHeader: (h) => (hdr = h) },
    );
    check(res.message === "hello", `message ${res.message}`);
    check(res.tags.join() === "a,b" && res.labels.k === "v", "fields lost");
    check(hdr?.get("x-hello") === "world", `response header x-hello ${hdr?.get("x-hello")}`);
  });

  await run("large", async () => {
    const big = "x".repeat(largeSize);
    const res = await client.echo({ message: big });
    check(res.message.length === big.length && res.message === big, `got ${res.message.length} bytes`);
    return `${big.length} bytes each way`;
  });

  await run("error-with-headers", async () => {
    try {
      await client.echo(
        { message: "x", fail: { code: Code.NotFound, message: "nothing here" } },
        { headers: { "x-err-header": "kept" } },
      );
    } catch (e) {
      const err = ConnectError.from(e);
      check(err.code === Code.NotFound, `code ${err.code} ${err.rawMessage}`);
      check(err.rawMessage === "nothing here", `message ${err.rawMessage}`);
      check(err.metadata.get("x-err-header") === "kept", `x-err-header ${err.metadata.get("x-err-header")}`);
      check(err.details.length === 2, `details ${err.details.length}`);
      return "NOT_FOUND with response header and 2 details";
    }
    throw new Error("no error");
  });

  await run("server-streaming", async () => {
    const start = performance.now();
    const times = [];
    const remaining = [];
    for await (const tick of client.countdown({ count: 3, interval: { seconds: 0n, nanos: interval * 1e6 } })) {
      times.push(performance.now() - start);
      remaining.push(tick.remaining);
    }
    check(remaining.join() === "2,1,0", `remaining ${remaining}`);
    return checkIncremental(times, interval);
  });

  await run("deadline", async () => {
    const start = performance.now();
    try {
      await client.echo({ message: "slow", delay: { seconds: 5n } }, { timeoutMs: 300 });
    } catch (e) {
      const err = ConnectError.from(e);
      const took = performance.now() - start;
      check(err.code === Code.DeadlineExceeded, `code ${Code[err.code]}: ${err.message}`);
      check(took < 3000, `took ${took}ms`);
      return `DEADLINE_EXCEEDED after ${Math.round(took)} ms`;
    }
    throw new Error("no error");
  });

  if (clientStreaming) {
    await run("client-streaming", async () => {
      async function* numbers() {
        for (let i = 1; i <= 4; i++) yield { value: { case: "integer", value: BigInt(i) } };
      }
      const res = await client.sum(numbers());
      check(res.total === 10 && res.count === 4, `total ${res.total} count ${res.count}`);
    });
  }

  if (bidi) {
    await run("bidi", async () => {
      // Each message is sent only after the answer to the previous one has
      // arrived, which needs full duplex.
      const texts = ["one", "two", "three"];
      let next;
      const answered = () => new Promise((r) => (next = r));
      async function* outgoing() {
        for (const text of texts) {
          yield { author: { name: "node" }, text };
          await answered();
        }
      }
      const got = [];
      const timer = setTimeout(() => next?.(), 10000); // bounded
      try {
        for await (const m of client.chat(outgoing())) {
          got.push(m.text);
          next?.();
        }
      } finally {
        clearTimeout(timer);
      }
      check(got.join("|") === texts.map((t) => `node said: ${t}`).join("|"), `got ${JSON.stringify(got)}`);
      return "3 messages, each sent after the previous answer";
    });
  }
}

// ---- the official grpc-web client, without its code generator ----

// xhr2 fills responseText only when the response has ended. Browsers update
// it as each chunk arrives and fire readystatechange in the LOADING state,
// which is how the official client reads a text stream incrementally; this
// subclass does what browsers do.
class BrowserLikeXHR extends xhr2 {
  _onHttpResponseData(response, data) {
    const r = super._onHttpResponseData(response, data);
    if (this._response === response && (this.responseType === "" || this.responseType === "text")) {
      this.responseText = Buffer.concat(this._responseParts).toString("latin1");
      this._setReadyState(xhr2.LOADING);
    }
    return r;
  }
}

async function grpcWebSuite(format) {
  globalThis.XMLHttpRequest = BrowserLikeXHR;
  const { GrpcWebClientBase, MethodDescriptor, MethodType, StatusCode } = grpcWeb;
  const client = new GrpcWebClientBase({ format });
  const svc = "/grpctap.demo.v1.DemoService/";
  const echo = new MethodDescriptor(
    svc + "Echo",
    MethodType.UNARY,
    Object,
    Object,
    (req) => toBinary(EchoRequestSchema, req),
    (bytes) => fromBinary(EchoResponseSchema, bytes),
  );
  const countdown = new MethodDescriptor(
    svc + "Countdown",
    MethodType.SERVER_STREAMING,
    Object,
    Object,
    (req) => toBinary(CountdownRequestSchema, req),
    (bytes) => fromBinary(TickSchema, bytes),
  );

  // unaryCall resolves with {err, res, headers}: headers is a promise of
  // the response headers, which this client reports (as the 'metadata'
  // event) only once the response is complete, after the callback.
  function unaryCall(req, md = {}) {
    return new Promise((resolve) => {
      let gotHeaders;
      const headers = new Promise((r) => {
        gotHeaders = r;
        setTimeout(() => r({}), 3000); // bounded
      });
      const stream = client.rpcCall(baseUrl + svc + "Echo", create(EchoRequestSchema, req), md, echo, (err, res) =>
        resolve({ err, res, headers }),
      );
      stream.on("metadata", (h) => gotHeaders(h));
    });
  }

  await run("unary", async () => {
    const { err, res, headers } = await unaryCall({ message: "hello", tags: ["a"] }, { "x-hello": "world" });
    check(!err, `error ${err?.code} ${err?.message}`);
    check(res.message === "hello" && res.tags[0] === "a", `message ${res.message}`);
    const h = await headers;
    check(h["x-hello"] === "world", `headers ${JSON.stringify(h)}`);
  });

  await run("large", async () => {
    const big = "y".repeat(largeSize);
    const { err, res } = await unaryCall({ message: big });
    check(!err, `error ${err?.code} ${err?.message}`);
    check(res.message === big, `got ${res.message.length} bytes`);
    return `${big.length} bytes each way`;
  });

  await run("error-with-headers", async () => {
    const { err, headers } = await unaryCall(
      { message: "x", fail: { code: StatusCode.PERMISSION_DENIED, message: "go away" } },
      { "x-err-header": "kept" },
    );
    check(err, "no error");
    check(err.code === StatusCode.PERMISSION_DENIED, `code ${err.code} ${err.message}`);
    check(err.message === "go away", `message ${err.message}`);
    // The response headers arrive as the 'metadata' event, the trailers
    // with the error.
    const h = await headers;
    check(h["x-err-header"] === "kept", `headers ${JSON.stringify(h)}`);
    check(err.metadata?.["grpc-status-details-bin"], `trailers ${JSON.stringify(err.metadata)}`);
    return "PERMISSION_DENIED with response header";
  });

  await run("server-streaming", async () => {
    const start = performance.now();
    const times = [];
    const remaining = [];
    await new Promise((resolve, reject) => {
      const req = create(CountdownRequestSchema, { count: 3, interval: { seconds: 0n, nanos: interval * 1e6 } });
      const stream = client.serverStreaming(baseUrl + svc + "Countdown", req, {}, countdown);
      const timer = setTimeout(() => reject(new Error("timed out")), 10000);
      stream.on("data", (tick) => {
        times.push(performance.now() - start);
        remaining.push(tick.remaining);
      });
      stream.on("error", (e) => {
        clearTimeout(timer);
        reject(new Error(`${e.code} ${e.message}`));
      });
      stream.on("end", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    check(remaining.join() === "2,1,0", `remaining ${remaining}`);
    if (format === "text") return checkIncremental(times, interval);
    // Binary mode buffers the whole XHR response by design: only check
    // that the stream is complete.
    return `3 ticks (binary mode reads the response whole)`;
  });

  await run("deadline", async () => {
    const start = performance.now();
    const { err } = await unaryCall(
      { message: "slow", delay: { seconds: 5n } },
      { deadline: String(Date.now() + 300) },
    );
    const took = performance.now() - start;
    check(err?.code === StatusCode.DEADLINE_EXCEEDED, `code ${err?.code} ${err?.message}`);
    check(took < 3000, `took ${took}ms`);
    return `DEADLINE_EXCEEDED after ${Math.round(took)} ms`;
  });
}

switch (args.client) {
  case "connect-web-binary":
    await connectSuite(webTransport({ baseUrl, useBinaryFormat: true }), {});
    break;
  case "connect-web-json":
    await connectSuite(webTransport({ baseUrl, useBinaryFormat: false }), {});
    break;
  case "connect-node-h1":
    await connectSuite(nodeTransport({ baseUrl, httpVersion: "1.1" }), { clientStreaming: true, bidi: true });
    break;
  case "connect-node-h2":
    await connectSuite(nodeTransport({ baseUrl, httpVersion: "2" }), { clientStreaming: true, bidi: true });
    break;
  case "connect-node-h2-json":
    // JSON in every RPC kind; messages over 1 KiB are sent gzipped.
    await connectSuite(
      nodeTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false, sendCompression: compressionGzip }),
      { clientStreaming: true, bidi: true },
    );
    break;
  case "grpc-web-text":
    await grpcWebSuite("text");
    break;
  case "grpc-web-binary":
    await grpcWebSuite("binary");
    break;
  default:
    console.error(`unknown client ${args.client}`);
    process.exit(2);
}
process.exit(failed ? 1 : 0);
