// An agency's back office that spotflow delivers to over HTTP, written as an
// integrator would with a Standard Webhooks library: it takes a work item
// only with the agency's credential and a valid signature, answers
// "accepted" at once, and reports "in_progress" and then "completed" later,
// over HTTPS, with the agency's token.
//
// Environment: SIGNING_SECRET ("whsec_..."), CREDENTIAL (the Authorization
// header spotflow must send), AGENCY (its code). It listens on a free port
// of 127.0.0.1 and prints {"listening": port}. It then reads one line of
// JSON on stdin, {"spotflow": "https://...", "token": "sfa_..."}, and
// reports to that spotflow; NODE_EXTRA_CA_CERTS makes it trust spotflow's
// CA. It prints a JSON line for every delivery and every report:
//   {"refused": reason}                                 a delivery it refused
//   {"delivered": work item id, "citizen_present": bool} a delivery it took
//   {"reported": status, "work_item": id, "answer": HTTP status}
// and, for each work item, what spotflow answers to a report on another
// agency's work item and to one with a token that is not the agency's:
//   {"probe": what, "answer": HTTP status}
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.SIGNING_SECRET);
const agency = process.env.AGENCY;
const print = (v) => console.log(JSON.stringify(v));

let spotflow; // {spotflow, token}, once told
const told = new Promise((resolve) => {
  createInterface({ input: process.stdin }).once("line", (line) => resolve((spotflow = JSON.parse(line))));
});

async function report(item, status, id = `${item.id}.${status}`, token = spotflow.token, workItem = item.id) {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${spotflow.spotflow}/v1/agency/work-items/${encodeURIComponent(workItem)}/status`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
        body: JSON.stringify({ id, status, note: `${status} by ${agency}`, round: item.round ?? 0 }),
      });
      if (res.status < 500 || attempt >= 20) return res.status;
    } catch (err) {
      if (attempt >= 20) throw err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function later(item) {
  await told;
  await new Promise((r) => setTimeout(r, 100));
  for (const status of ["in_progress", "completed"]) {
    print({ reported: status, work_item: item.id, answer: await report(item, status) });
  }
  const other = `${item.request_id}.tax`;
  print({ probe: "another agency's work item", answer: await report(item, "completed", `${other}.completed`, spotflow.token, other) });
  print({ probe: "a token that is not the agency's", answer: await report(item, "rejected", undefined, "sfa_forged") });
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const refuse = (reason) => {
      print({ refused: reason });
      res.writeHead(401, { "Content-Type": "text/plain" }).end(reason);
    };
    if (req.headers.authorization !== process.env.CREDENTIAL) return refuse("credential");
    let item;
    try {
      item = webhook.verify(body, req.headers);
    } catch (err) {
      return refuse(`signature: ${err.message}`);
    }
    print({ delivered: item.id, citizen_present: Boolean(item.citizen?.national_id) });
    res.writeHead(202, { "Content-Type": "application/json" }).end(JSON.stringify({ status: "accepted", note: "received" }));
    later(item).catch((err) => print({ error: String(err) }));
  });
});
server.listen(0, "127.0.0.1", () => print({ listening: server.address().port }));
