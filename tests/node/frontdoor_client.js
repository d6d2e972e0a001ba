// A Node client of Atelier's gRPC front door, built from proto/ at run time as users' generated
// clients are: creates a project, reads it back, lists projects and asks for a missing one.
// Usage: node frontdoor_client.js HOST:PORT PROJECT_ID; prints one JSON object.
"use strict";

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const root = path.resolve(__dirname, "..", "..");
const definition = protoLoader.loadSync("atelier/data/v1/data_service.proto", {
  includeDirs: [path.join(root, "proto"), path.join(root, ".proto-deps")],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
});
const { DataService } = grpc.loadPackageDefinition(definition).atelier.data.v1;

function call(client, method, request, metadata) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    let headers = {};
    const pending = client[method](request, metadata, { deadline }, (error, response) => {
      resolve({ error, response, headers });
    });
    pending.on("metadata", (received) => {
      headers = received.getMap();
    });
  });
}

async function main() {
  const [address, projectId] = process.argv.slice(2);
  const client = new DataService(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("x-request-id", "node-1");
  const created = await call(client, "CreateProject", { project_id: projectId, project: { description: "from node" } }, metadata);
  const fetched = await call(client, "GetProject", { name: `projects/${projectId}` }, new grpc.Metadata());
  const listed = await call(client, "ListProjects", {}, new grpc.Metadata());
  const missing = await call(client, "GetProject", { name: "projects/nowhere" }, new grpc.Metadata());
  client.close();
  const failure = (result) => result.error && { code: result.error.code, details: result.error.details };
  console.log(
    JSON.stringify({
      created: created.response || failure(created),
      created_request_id: created.headers["x-request-id"],
      fetched: fetched.response || failure(fetched),
      listed: listed.response ? listed.response.projects.map((p) => p.name) : failure(listed),
      missing: failure(missing),
      missing_has_details: Boolean(missing.error && missing.error.metadata.get("grpc-status-details-bin").length),
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
