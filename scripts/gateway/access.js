// The gateway's access checks (nginx njs 0.7): who the caller is (the SHA-256 of its bearer
// key looked up in clients.js, written by scripts/gateway/config.py), whether its scope holds
// the model called, and the refusals in the shape of the API called. Routing and limits are
// nginx's own (nginx.conf beside this file).
import policy from 'clients.js';

const crypto = require('crypto');

const SCOPES = {};  // client name -> [{name: RegExp, version: string|null}]
for (const hash in policy.clients) {
    const client = policy.clients[hash];
    SCOPES[client.name] = client.models.map(function (pattern) {
        const parts = pattern.split(':');  // njs 0.7 has no destructuring
        const glob = parts[0].replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
        return {name: new RegExp('^' + glob + '$'), version: parts[1] || null};
    });
}

function presentedKey(r) {
    const header = r.headersIn['Authorization'] || '';
    const match = header.match(/^Bearer\s+(\S+)$/i);
    return match ? match[1] : null;
}

// Each request runs in its own copy of this module (njs clones the VM per request), so the
// caller found once is kept for the request's other variables ($refused, $client, the log)
let found_caller;

function caller(r) {
    if (found_caller !== undefined) {
        return found_caller;
    }
    const key = presentedKey(r);
    const hash = key === null ? null : crypto.createHash('sha256').update(key).digest('hex');
    found_caller = (hash && policy.clients[hash]) || null;
    return found_caller;
}

// js_set $client: the caller's name, or "" (no key, or a key no client has)
function client(r) {
    const found = caller(r);
    return found ? found.name : '';
}

// A request without a version is for the served default: a scope entry with a version allows
// that version only.
function allows(name, model, version) {
    return (SCOPES[name] || []).some(function (scope) {
        return scope.name.test(model) && (scope.version === null || scope.version === version);
    });
}

const TITLES = {
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
    413: 'Payload Too Large', 429: 'Too Many Requests'
};
const OPENAI_TYPES = {
    400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error',
    404: 'not_found_error', 413: 'invalid_request_error',
    429: 'rate_limit_error'
};

// The refusal as the API answers its own errors: TorchServe's, KServe v2's (Triton), OpenAI's.
function refuse(r, status, message) {
    const errors = r.variables.errors || 'kserve_v2';
    let body;
    if (errors === 'torchserve') {
        body = {code: status, type: TITLES[status], message: message};
    } else if (errors === 'openai') {
        body = {error: {message: message, type: OPENAI_TYPES[status], param: null, code: status}};
    } else {
        body = {error: message};
    }
    if (status === 401) {
        r.headersOut['WWW-Authenticate'] = 'Bearer realm="torchship"';
    }
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify(body));
}

function unknownCaller(r) {
    const missing = presentedKey(r) === null;
    refuse(r, 401, missing
        ? "no key: send 'Authorization: Bearer <your key>'"
        : 'this key is not known (revoked, or mistyped)');
}

// Why the caller may not take this route: [status, message], or null where it may.
function verdict(r) {
    const scope = r.variables.scope;
    if (scope === 'open') {
        return null;
    }
    const found = caller(r);
    if (!found) {
        return [401, presentedKey(r) === null
            ? "no key: send 'Authorization: Bearer <your key>'"
            : 'this key is not known (revoked, or mistyped)'];
    }
    if (scope === 'admin' && !found.admin) {
        return [403, `client '${found.name}' may not use the admin APIs`];
    }
    const model = r.variables.model;
    if (scope === 'model' && model && !allows(found.name, model, r.variables.version || null)) {
        const which = r.variables.version ? `${model} version ${r.variables.version}` : model;
        return [403, `client '${found.name}' may not call ${which}`];
    }
    return null;
}

// js_set $refused on a runtime's route: "" lets the request go on to the runtime (no njs
// content handler, no internal redirect on the way: measured, each costs throughput)
function refused(r) {
    const found = verdict(r);
    return found ? String(found[0]) : '';
}

// error_page of a refused route: the refusal in the route's error shape
function refusal(r) {
    const found = verdict(r);
    refuse(r, found ? found[0] : 403, found ? found[1] : 'refused');
}

// js_content of /v1/completions and /v1/chat/completions: routed by the body's model
function openai(r) {
    const found = caller(r);
    if (!found) {
        return unknownCaller(r);
    }
    let model;
    try {
        model = JSON.parse(r.requestText || '').model;
    } catch (e) {
        return refuse(r, 400, 'the body is not JSON: send {"model": ..., "prompt": ...}');
    }
    const target = typeof model === 'string' ? policy.openai[model] : undefined;
    const yours = Object.keys(policy.openai).filter((m) => allows(found.name, m, null));
    if (target === undefined) {
        return refuse(r, 404, `no model ${JSON.stringify(model)} answers OpenAI's API here; ` +
            'yours: ' + JSON.stringify(yours) + ' (GET /v1/models)');
    }
    if (!allows(found.name, model, null)) {
        return refuse(r, 403, `client '${found.name}' may not call ${model}; yours: ` +
            JSON.stringify(yours));
    }
    r.variables.openai_path = target.path + r.uri;
    r.internalRedirect(target.location);
}

// /v1/models: the OpenAI models the caller may use, in OpenAI's list shape
function models(r) {
    const found = caller(r);
    if (!found) {
        return unknownCaller(r);
    }
    const data = Object.keys(policy.openai).filter((m) => allows(found.name, m, null)).map(
        (m) => ({id: m, object: 'model', created: 0, owned_by: 'torchship'}));
    r.headersOut['Content-Type'] = 'application/json';
    r.return(200, JSON.stringify({object: 'list', data: data}));
}

// error_page 429: over the client's rate or its streams at once
function tooMany(r) {
    r.headersOut['Retry-After'] = String(policy.retryAfter[r.variables.client] || 1);
    refuse(r, 429, `client '${r.variables.client}' is over its rate or its requests at once; ` +
        'retry after the Retry-After seconds');
}

// error_page 413: a body over the gateway's client_max_body_size
function tooLarge(r) {
    refuse(r, 413, `the body is over the gateway's limit of ${policy.maxBody}; send less`);
}

function notFound(r) {
    refuse(r, 404, `no route ${r.uri} through this gateway: /predictions/<model>, ` +
        '/v2/models/<model>/..., /v1/completions, /v1/chat/completions, /v1/models');
}

// error_page 497: plain HTTP on the TLS port
function plainHttp(r) {
    refuse(r, 400, `this port speaks HTTPS only: call https://${r.headersIn['Host'] || 'host'}` +
        `${r.uri}`);
}

export default {client, refused, refusal, openai, models, tooMany, tooLarge, notFound, plainHttp};
