// Calls the demo backend (grpctap.demo.v1.DemoService) at --target with
// @grpc/grpc-js, which reaches it through the forward proxy named by the
// grpc_proxy / https_proxy environment variables (HTTP CONNECT). Every RPC
// kind, metadata both ways, trailers, status details and a deadline.
// Prints one JSON line per case: {"client", "case", "ok", "detail"}; exits 1
// when a case fails.
//
//   https_proxy=http://127.0.0.1:50050 NODE_EXTRA_CA_CERTS=ca.pem \
//     node grpcjs-forward.mjs --target backend.test:443 --tls
import { parseArgs } from "node:util";
import grpc from "@grpc/grpc-js";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import {
  EchoRequestSchema,
  EchoResponseSchema,
  SumRequestSchema,
  SumResponseSchema,
  CountdownRequestSchema,
  TickSchema,
  ChatMessageSchema,
} from "./gen/demo_pb.js";

const { values: args } = parseArgs({
  options: { target: { type: "string" }, tls: { type: "boolean", default: false } },
});
if (!args.target) {
  console.error("usage: node grpcjs-forward.mjs --target HOST:PORT [--tls]");
  process.exit(2);
}

const creds = args.tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
const client = new grpc.Client(args.target, creds);
const svc = "/grpctap.demo.v1.DemoService/";
const ser = (schema) => (msg) => Buffer.from(toBinary(schema, msg));
const de = (schema) => (buf) => fromBinary(schema, buf);
const deadline = () => Date.now() + 10000;

let failed = false;
function report(kase, ok, detail = "") {
  if (!ok) failed = true;
  console.log(JSON.stringify({ client: "grpc-js", case: kase, ok, detail: String(detail) }));
}

// unary: request metadata comes back as response headers (the demo echoes
// x-* keys), the trailer x-echo-handled-at is set.
async function unary() {
  const md = new grpc.Metadata();
  md.set("x-trace", "js-1");
  let headers;
  let statusP;
  const resp = await new Promise((resolve, reject) => {
    const call = client.makeUnaryRequest(
      svc + "Echo", ser(EchoRequestSchema), de(EchoResponseSchema),
      create(EchoRequestSchema, { message: "from grpc-js", tags: ["a", "b"], labels: { k: "v" } }),
      md, { deadline: deadline() },
      (err, r) => (err ? reject(err) : resolve(r)));
    call.on("metadata", (m) => { headers = m; });
    statusP = new Promise((r) => call.on("status", r));
  });
  const st = await statusP;
  const trace = headers?.get("x-trace");
  const handled = st.metadata.get("x-echo-handled-at");
  report("unary", resp.message === "from grpc-js" && resp.labels.k === "v" && trace?.[0] === "js-1" && handled.length === 1,
    `message=${resp.message} x-trace=${trace} x-echo-handled-at=${handled}`);
}

async function unaryStatusDetails() {
  const err = await new Promise((resolve) => {
    client.makeUnaryRequest(
      svc + "Echo", ser(EchoRequestSchema), de(EchoResponseSchema),
      create(EchoRequestSchema, { message: "nope", fail: { code: grpc.status.NOT_FOUND, message: "no such echo" } }),
      new grpc.Metadata(), { deadline: deadline() },
      (e) => resolve(e));
  });
  const details = err?.metadata?.get("grpc-status-details-bin") ?? [];
  report("status-details", err?.code === grpc.status.NOT_FOUND && err.details === "no such echo" && details.length === 1 && details[0].length > 20,
    `code=${err?.code} details=${err?.details} details-bin=${details.length}`);
}

// A 300 ms deadline on a call the backend answers after 3 s ends at about
// 300 ms. grpc-js says DEADLINE_EXCEEDED when its own timer fires first;
// when the proxy's (a grpc-go server, whose timer starts from the
// grpc-timeout it received) fires first, grpc-go resets the stream and
// grpc-js reports that as CANCELLED, as it would with any grpc-go server.
async function deadlineExceeded() {
  const t0 = Date.now();
  const err = await new Promise((resolve) => {
    client.makeUnaryRequest(
      svc + "Echo", ser(EchoRequestSchema), de(EchoResponseSchema),
      create(EchoRequestSchema, { message: "slow", delay: { seconds: 3n } }),
      new grpc.Metadata(), { deadline: Date.now() + 300 },
      (e) => resolve(e));
  });
  const took = Date.now() - t0;
  const code = err?.code;
  report("deadline", (code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.CANCELLED) && took >= 250 && took < 2500,
    `code=${code} after ${took}ms`);
}

async function clientStream() {
  const resp = await new Promise((resolve, reject) => {
    const call = client.makeClientStreamRequest(
      svc + "Sum", ser(SumRequestSchema), de(SumResponseSchema),
      new grpc.Metadata(), { deadline: deadline() },
      (err, r) => (err ? reject(err) : resolve(r)));
    for (const n of [1n, 2n, 3n]) call.write(create(SumRequestSchema, { value: { case: "integer", value: n } }));
    call.end();
  });
  report("client-stream", resp.total === 6 && resp.count === 3, `total=${resp.total} count=${resp.count}`);
}

async function serverStream() {
  const ticks = [];
  const trailers = await new Promise((resolve, reject) => {
    const call = client.makeServerStreamRequest(
      svc + "Countdown", ser(CountdownRequestSchema), de(TickSchema),
      create(CountdownRequestSchema, { count: 3, interval: { nanos: 5_000_000 } }),
      new grpc.Metadata(), { deadline: deadline() });
    call.on("data", (t) => ticks.push(t.remaining));
    call.on("error", reject);
    call.on("status", (s) => { if (s.code === grpc.status.OK) resolve(s.metadata); });
  });
  report("server-stream", ticks.join(",") === "2,1,0", `ticks=${ticks} trailers=${Object.keys(trailers.getMap())}`);
}

async function bidi() {
  const got = [];
  await new Promise((resolve, reject) => {
    const call = client.makeBidiStreamRequest(
      svc + "Chat", ser(ChatMessageSchema), de(ChatMessageSchema),
      new grpc.Metadata(), { deadline: deadline() });
    const texts = ["hi", "bye"];
    call.on("data", (m) => {
      got.push(m.text);
      if (got.length < texts.length) call.write(create(ChatMessageSchema, { author: { name: "js" }, text: texts[got.length] }));
      else call.end();
    });
    call.on("error", reject);
    call.on("status", (s) => (s.code === grpc.status.OK ? resolve() : reject(new Error(s.details))));
    call.write(create(ChatMessageSchema, { author: { name: "js" }, text: texts[0] }));
  });
  report("bidi", got.join("|") === "js said: hi|js said: bye", got.join("|"));
}

for (const [name, fn] of Object.entries({ unary, unaryStatusDetails, deadlineExceeded, clientStream, serverStream, bidi })) {
  try {
    await fn();
  } catch (e) {
    report(name, false, e?.stack ?? e);
  }
}
client.close();
process.exit(failed ? 1 : 0);
