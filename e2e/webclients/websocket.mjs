// Runs improbable-eng's gRPC-Web client (@improbable-eng/grpc-web) over its
// websocket transport against grpctap's bridge (--web-websockets) in front
// of the demo backend; prints one JSON line per case like clients.mjs.
// Needs a WebSocket global: run with node --experimental-websocket on Node 20.
//
//   node --experimental-websocket websocket.mjs --addr 127.0.0.1:8080
import { parseArgs } from "node:util";
import improbable from "@improbable-eng/grpc-web";
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

const { grpc } = improbable;
const { values: args } = parseArgs({ options: { addr: { type: "string" } } });
if (!args.addr) {
  console.error("usage: node --experimental-websocket websocket.mjs --addr HOST:PORT");
  process.exit(2);
}
const host = `http://${args.addr}`;
const transport = grpc.WebsocketTransport();

let failed = false;
async function run(kase, fn) {
  try {
    const detail = await fn();
    console.log(JSON.stringify({ client: "improbable-websocket", case: kase, ok: true, detail: String(detail ?? "") }));
  } catch (e) {
    failed = true;
    console.log(JSON.stringify({ client: "improbable-websocket", case: kase, ok: false, detail: String(e?.stack ?? e) }));
  }
}
function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// The client wants google-protobuf-style classes: instances with
// serializeBinary, and a deserializeBinary on the response type. These
// adapt @bufbuild/protobuf schemas to that shape.
function method(name, reqSchema, resSchema, requestStream, responseStream) {
  return {
    methodName: name,
    service: { serviceName: "grpctap.demo.v1.DemoService" },
    requestStream,
    responseStream,
    requestType: class {
      constructor(init) {
        this.msg = create(reqSchema, init);
      }
      serializeBinary() {
        return toBinary(reqSchema, this.msg);
      }
    },
    responseType: { deserializeBinary: (bytes) => fromBinary(resSchema, bytes) },
  };
}
const Echo = method("Echo", EchoRequestSchema, EchoResponseSchema, false, false);
const Sum = method("Sum", SumRequestSchema, SumResponseSchema, true, false);
const Countdown = method("Countdown", CountdownRequestSchema, TickSchema, false, true);
const Chat = method("Chat", ChatMessageSchema, ChatMessageSchema, true, true);

// open starts a call and collects what comes back; onMessage may send more.
function open(def, metadata, onMessage) {
  const client = grpc.client(def, { host, transport });
  const got = { headers: null, messages: [], times: [] };
  const start = performance.now();
  const ended = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out")), 10000);
    client.onHeaders((h) => (got.headers = h));
    client.onMessage((m) => {
      got.messages.push(m);
      got.times.push(performance.now() - start);
      onMessage?.(m, client);
    });
    client.onEnd((code, message, trailers) => {
      clearTimeout(timer);
      Object.assign(got, { code, message, trailers });
      resolve(got);
    });
  });
  client.start(new grpc.Metadata(metadata ?? {}));
  return { client, ended };
}

await run("unary", async () => {
  const { client, ended } = open(Echo, { "x-ws": "yes" });
  client.send(new Echo.requestType({ message: "over a websocket" }));
  client.finishSend();
  const got = await ended;
  check(got.code === grpc.Code.OK, `code ${got.code} ${got.message}`);
  check(got.messages[0]?.message === "over a websocket", `messages ${got.messages.map((m) => m.message)}`);
  check(got.headers?.get("x-ws")[0] === "yes", `headers ${JSON.stringify(got.headers)}`);
});

await run("error-with-headers", async () => {
  const { client, ended } = open(Echo, { "x-err": "kept" });
  client.send(new Echo.requestType({ message: "x", fail: { code: grpc.Code.NotFound, message: "gone" } }));
  client.finishSend();
  const got = await ended;
  check(got.code === grpc.Code.NotFound && got.message === "gone", `code ${got.code} ${got.message}`);
  check(got.headers?.get("x-err")[0] === "kept", `headers ${JSON.stringify(got.headers)}`);
  return "NOT_FOUND, header kept";
});

await run("server-streaming", async () => {
  const { client, ended } = open(Countdown);
  client.send(new Countdown.requestType({ count: 3, interval: { seconds: 0n, nanos: 400e6 } }));
  client.finishSend();
  const got = await ended;
  check(got.code === grpc.Code.OK, `code ${got.code} ${got.message}`);
  check(got.messages.map((t) => t.remaining).join() === "2,1,0", "ticks");
  check(got.times[2] - got.times[0] >= 500, `ticks arrived together: ${got.times}`);
  return `ticks at ${got.times.map(Math.round).join(", ")} ms`;
});

await run("client-streaming", async () => {
  const { client, ended } = open(Sum);
  for (let i = 1; i <= 4; i++) client.send(new Sum.requestType({ value: { case: "integer", value: BigInt(i) } }));
  client.finishSend();
  const got = await ended;
  check(got.code === grpc.Code.OK, `code ${got.code} ${got.message}`);
  check(got.messages[0]?.total === 10 && got.messages[0]?.count === 4, `sum ${got.messages[0]?.total} ${got.messages[0]?.count}`);
});

await run("bidi", async () => {
  const texts = ["one", "two", "three"];
  let i = 0;
  const { client, ended } = open(Chat, {}, (m, c) => {
    // Send the next message only once the previous answer is here.
    if (++i < texts.length) c.send(new Chat.requestType({ author: { name: "ws" }, text: texts[i] }));
    else c.finishSend();
  });
  client.send(new Chat.requestType({ author: { name: "ws" }, text: texts[0] }));
  const got = await ended;
  check(got.code === grpc.Code.OK, `code ${got.code} ${got.message}`);
  const want = texts.map((t) => `ws said: ${t}`).join("|");
  check(got.messages.map((m) => m.text).join("|") === want, `got ${got.messages.map((m) => m.text)}`);
  return "3 messages, each sent after the previous answer";
});

process.exit(failed ? 1 : 0);
