// An agency's back office, as an integrator would write it with the
// official NATS client: it connects with the seed of the credential spotflow
// issued it, takes one work item from its own queue, reports accepted,
// in_progress and completed, acknowledges it, and then tries what its
// credential does not allow. It prints one JSON object: the work item it
// handled and the server's refusals.
//
//   NATS_URL=nats://127.0.0.1:4222 AGENCY=justice SEED_FILE=justice.nk node agency.mjs
import { readFileSync } from "node:fs";
import { connect, nkeyAuthenticator } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

const agency = process.env.AGENCY;
const seed = readFileSync(process.env.SEED_FILE, "utf8").trim();
const nc = await connect({
  servers: process.env.NATS_URL,
  authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
  inboxPrefix: `_INBOX_agency-${agency}`,
});
const refusals = [];
(async () => {
  for await (const s of nc.status()) {
    if (s.type === "error") refusals.push(String(s.error?.message ?? s.error));
  }
})();

const js = jetstream(nc);
const consumer = await js.consumers.get("SPOTFLOW_WORK", `agency-${agency}`);
let msg = null;
for (let i = 0; i < 30 && msg === null; i++) {
  msg = await consumer.next({ expires: 1000 });
}
if (msg === null) throw new Error("no work item came");
const item = msg.json();
msg.working();
const report = async (status, note) => {
  const id = `${item.id}.${status}` + (item.round ? `.r${item.round}` : "");
  const event = {
    schema: "spotflow.status.v1", id, request_id: item.request_id, agency,
    status, at: new Date().toISOString(), round: item.round ?? 0, ...(note ? { note } : {}),
  };
  await js.publish(`spotflow.status.${agency}`, JSON.stringify(event), { msgID: id });
};
await report("accepted");
await report("in_progress");
await report("completed", "Certificate issued");
await msg.ackAck();

// What the credential does not allow.
nc.publish("$JS.API.CONSUMER.MSG.NEXT.SPOTFLOW_WORK.agency-tax", JSON.stringify({ batch: 1 }));
nc.publish("spotflow.status.tax", "{}");
nc.publish(`spotflow.requests.lisboa.desk-forged`, "{}");
nc.subscribe("spotflow.requests.>");
nc.subscribe("_INBOX.>");
await nc.flush();
await new Promise((resolve) => setTimeout(resolve, 1500));
console.log(JSON.stringify({ work_item: item.id, citizen_present: Boolean(item.citizen?.national_id), refusals }));
await nc.close();
