// Verifies webhook deliveries with the Standard Webhooks reference library (npm
// `standardwebhooks`), independently of Forge's own signing code. Reads a JSON array of
// {secret, headers, body} on stdin; prints the number verified, or fails naming the first
// delivery that does not verify. Run by crates/forge/tests/job_api_webhooks.rs.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const deliveries = JSON.parse(input);
let verified = 0;
for (const [i, d] of deliveries.entries()) {
  try {
    new Webhook(d.secret).verify(d.body, d.headers);
    verified += 1;
  } catch (e) {
    console.error(`delivery ${i} (${d.headers["webhook-id"]}) does not verify: ${e.message}`);
    process.exit(1);
  }
}
console.log(`verified ${verified}`);
