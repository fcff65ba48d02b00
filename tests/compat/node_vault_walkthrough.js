// Run: npm install node-vault; set VAULT_ADDR, ROLE_ID, SECRET_ID as the walkthrough does; node node_vault_walkthrough.js
// The Node.js walkthrough (000): AppRole login with node-vault, read a kv v2
// secret, and a refused delete.
const vault = require("node-vault")({ apiVersion: "v1", endpoint: process.env.VAULT_ADDR });
const run = async () => {
  const result = await vault.approleLogin({ role_id: process.env.ROLE_ID, secret_id: process.env.SECRET_ID });
  vault.token = result.auth.client_token;
  const { data } = await vault.read("secret/data/mysql/webapp");
  console.log("db_name", data.data.db_name, "username", data.data.username, "password", data.data.password);
  console.log("Attempt to delete the secret");
  try {
    await vault.delete("secret/data/mysql/webapp");
    console.log("DELETE WAS ALLOWED");
    process.exit(1);
  } catch (e) {
    console.log("delete refused:", e.response && e.response.statusCode, e.message);
  }
};
run().catch((e) => { console.error("FAILED", e.message); process.exit(1); });
