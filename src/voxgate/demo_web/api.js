/* HTTP calls to the gateway (dev token, voices, clone, ICE servers) and its error envelope. */

export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export const api = {
  async call(path, { method = 'GET', body, headers = {} } = {}) {
    const response = await send(path, { method, body, headers });
    if (!response.ok) throw await errorOf(response);
    return (await response.json()).data;
  },
  token: () => api.call('/v1/dev/client_token', { method: 'POST' }),
  voices: () => api.call('/v1/dev/voices'),
  clone: (fields) => api.call('/v1/dev/voices/clone', {
    method: 'POST',
    body: JSON.stringify(fields),
    headers: { 'Content-Type': 'application/json' },
  }),
  /** STUN/TURN servers the gateway advertises (WHEP: `Link: <url>; rel="ice-server"`). */
  async iceServers() {
    try {
      const response = await send('/v1/whep', { method: 'OPTIONS' });
      return parseIceLinks(response.headers.get('Link') || '');
    } catch {
      return []; // host candidates are enough on loopback and on a LAN
    }
  },
};

export async function send(path, init) {
  try {
    return await fetch(path, { cache: 'no-store', ...init });
  } catch {
    throw new ApiError('unreachable', `No answer from ${location.origin}${path}.`);
  }
}

/** The gateway's error envelope `{code, error, message}`, or what the status says. */
export async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  return new ApiError(
    body?.error ?? `http_${response.status}`,
    body?.message ?? `HTTP ${response.status} ${response.statusText}`,
    response.status,
  );
}

function parseIceLinks(header) {
  const servers = [];
  for (const link of header.split(/,\s*(?=<)/)) {
    const url = /<([^>]+)>/.exec(link)?.[1];
    const params = Object.fromEntries([...link.matchAll(/;\s*([\w-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!url || params.rel !== 'ice-server') continue;
    servers.push(params.username ? { urls: url, username: params.username, credential: params.credential } : { urls: url });
  }
  return servers;
}
