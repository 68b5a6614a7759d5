// A real S3-compatible server on 127.0.0.1 for the adapter-store tests: s3rver (a maintained
// Node implementation of the S3 REST API that checks SigV4 signatures against its default
// account S3RVER / S3RVER), storing into a temporary directory given as argv[2], with the bucket
// "adapters". Prints {"port": N} on stdout once listening; stops when stdin closes or on SIGTERM.
import S3rver from "s3rver";

const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory: process.argv[2], configureBuckets: [{ name: "adapters" }] });
const { port } = await server.run();
process.stdout.write(JSON.stringify({ port }) + "\n");
const stop = () => server.close().finally(() => process.exit(0));
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
