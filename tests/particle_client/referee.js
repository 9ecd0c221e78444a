// Drives the simulated Particle cloud with Particle's official client (particle-api-js).
// Usage: node referee.js '<JSON>' where JSON is {"baseUrl", "auth", "call", "args"}; prints
// {"statusCode", "body"} of the answer, or {"error": {"statusCode", "body",
// "shortErrorDescription"}} of a refusal, as one JSON line.
'use strict';
const Particle = require('particle-api-js');

async function main() {
    const { baseUrl, auth, call, args } = JSON.parse(process.argv[2]);
    const particle = new Particle({ baseUrl });
    if (typeof particle[call] !== 'function') {
        throw new Error(`particle-api-js has no ${call}`);
    }
    const options = Object.assign({ auth }, args);
    if (options.file !== undefined) {
        options.file = Buffer.from(options.file, 'utf8');  // as particle-cli uploads lists
    }
    try {
        const answer = await particle[call](options);
        process.stdout.write(JSON.stringify(answer) + '\n');
    } catch (err) {
        process.stdout.write(JSON.stringify({ error: {
            statusCode: err.statusCode, body: err.body,
            shortErrorDescription: err.shortErrorDescription || null } }) + '\n');
    }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + '\n'); process.exit(2); });
