// Runs in headless Chromium from a page on one origin and calls the demo
// backend through grpctap's bridge on another origin (?bridge=URL). A second
// bridge (?refusing=URL) does not allow this page's origin. Results go to
// window.__results; window.__done turns true at the end.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import grpcWeb from "grpc-web";
import {
  DemoService,
  EchoRequestSchema,
  EchoResponseSchema,
  CountdownRequestSchema,
  TickSchema,
} from "../gen/demo_pb.js";

const params = new URLSearchParams(location.search);
const bridge = params.get("bridge");
const refusing = params.get("refusing");
const results = [];
window.__results = results;

async function run(kase, fn) {
  try {
    const detail = await fn();
    results.push({ case: kase, ok: true, detail: String(detail ?? "") });
  } catch (e) {
    results.push({ case: kase, ok: false, detail: String(e?.stack ?? e) });
  }
  document.getElementById("out").textContent = JSON.stringify(results, null, 2);
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const interval = 400;
function incremental(times) {
  check(times.length === 3, `got ${times.length} ticks`);
  const spread = times[2] - times[0];
  check(spread >= interval * 1.25, `ticks arrived together (spread ${spread}ms)`);
  return `ticks at ${times.map((t) => Math.round(t)).join(", ")} ms`;
}

for (const binary of [true, false]) {
  const fmt = binary ? "binary" : "json";
  const client = createClient(DemoService, createGrpcWebTransport({ baseUrl: bridge, useBinaryFormat: binary }));

  await run(`connect-web-${fmt}/unary`, async () => {
    let hdr;
    const res = await client.echo(
      { message: "from the browser", tags: ["x"] },
      { headers: { "x-page": "yes" }, onHeader: (h) => (hdr = h) },
    );
    check(res.message === "from the browser", `message ${res.message}`);
    check(hdr.get("x-page") === "yes", `x-page header ${hdr.get("x-page")} (not exposed?)`);
    return res.message;
  });

  await run(`connect-web-${fmt}/error-with-headers`, async () => {
    try {
      await client.echo({ message: "x", fail: { code: Code.NotFound, message: "gone" } }, { headers: { "x-err": "kept" } });
    } catch (e) {
      const err = ConnectError.from(e);
      check(err.code === Code.NotFound && err.rawMessage === "gone", `${Code[err.code]} ${err.rawMessage}`);
      check(err.metadata.get("x-err") === "kept", `x-err ${err.metadata.get("x-err")}`);
      return "NOT_FOUND, header kept";
    }
    throw new Error("no error");
  });

  await run(`connect-web-${fmt}/server-streaming`, async () => {
    const start = performance.now();
    const times = [];
    for await (const _ of client.countdown({ count: 3, interval: { seconds: 0n, nanos: interval * 1e6 } })) {
      times.push(performance.now() - start);
    }
    return incremental(times);
  });

  await run(`connect-web-${fmt}/deadline`, async () => {
    try {
      await client.echo({ message: "slow", delay: { seconds: 5n } }, { timeoutMs: 300 });
    } catch (e) {
      const err = ConnectError.from(e);
      check(err.code === Code.DeadlineExceeded, `${Code[err.code]} ${err.message}`);
      return "DEADLINE_EXCEEDED";
    }
    throw new Error("no error");
  });
}

// The official client, text mode, over the browser's own XMLHttpRequest.
{
  const { GrpcWebClientBase, MethodDescriptor, MethodType } = grpcWeb;
  const client = new GrpcWebClientBase({ format: "text" });
  const svc = "/grpctap.demo.v1.DemoService/";
  const echo = new MethodDescriptor(svc + "Echo", MethodType.UNARY, Object, Object,
    (r) => toBinary(EchoRequestSchema, r), (b) => fromBinary(EchoResponseSchema, b));
  const countdown = new MethodDescriptor(svc + "Countdown", MethodType.SERVER_STREAMING, Object, Object,
    (r) => toBinary(CountdownRequestSchema, r), (b) => fromBinary(TickSchema, b));

  await run("grpc-web-text/unary", async () => {
    const res = await client.unaryCall(bridge + svc + "Echo", create(EchoRequestSchema, { message: "official" }), {}, echo);
    check(res.message === "official", `message ${res.message}`);
    return res.message;
  });

  await run("grpc-web-text/server-streaming", async () => {
    const start = performance.now();
    const times = [];
    await new Promise((resolve, reject) => {
      const req = create(CountdownRequestSchema, { count: 3, interval: { seconds: 0n, nanos: interval * 1e6 } });
      const s = client.serverStreaming(bridge + svc + "Countdown", req, {}, countdown);
      const timer = setTimeout(() => reject(new Error("timed out")), 10000);
      s.on("data", () => times.push(performance.now() - start));
      s.on("error", (e) => { clearTimeout(timer); reject(new Error(`${e.code} ${e.message}`)); });
      s.on("end", () => { clearTimeout(timer); resolve(); });
    });
    return incremental(times);
  });
}

// A bridge that does not allow this origin: the browser must refuse.
await run("refused-origin", async () => {
  const client = createClient(DemoService, createGrpcWebTransport({ baseUrl: refusing }));
  try {
    await client.echo({ message: "should not pass" });
  } catch (e) {
    const err = ConnectError.from(e);
    check(err.code !== Code.Ok, "no error");
    return `refused: ${Code[err.code]} ${err.rawMessage}`;
  }
  throw new Error("a refused origin's call succeeded");
});

window.__done = true;
