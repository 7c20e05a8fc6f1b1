// uWebSockets peer for ringchat's benchmarks: the slice of the client protocol the
// scenarios use (token in the URL, join a room, send-message in, new-message out), on
// uWS's native pub/sub. Usage: PORT=8090 node server.js
'use strict';
const uWS = require('uwebsockets');
const port = Number(process.env.PORT || 8090);
const decoder = new TextDecoder();
let seq = 0;

uWS.App().ws('/ws', {
  idleTimeout: 120,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 16 * 1024 * 1024,
  upgrade: (res, req, context) => {
    res.upgrade(
      { token: req.getQuery('token') || '' },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    ws.send(JSON.stringify({ data: { userId: ws.getUserData().token }, type: 'connected' }));
  },
  message: (ws, msg) => {
    let f;
    try { f = JSON.parse(decoder.decode(msg)); } catch (e) { return; }
    const d = f.data || {};
    if (f.type === 'join') {
      ws.subscribe(String(d.conversationId));
    } else if (f.type === 'send-message') {
      seq++;
      const out = JSON.stringify({
        data: {
          conversationId: d.conversationId,
          message: {
            content: d.content, conversationId: d.conversationId, messageId: String(seq),
            senderId: ws.getUserData().token, seqId: seq, type: 'text',
          },
        },
        type: 'new-message',
      });
      // uWS publishes to every subscriber but the publishing socket
      ws.publish(String(d.conversationId), out, false);
      ws.send(JSON.stringify({ data: { tempMessageId: d.tempMessageId, messageId: String(seq), seqId: seq, status: 'success' }, type: 'message-ack' }));
    } else if (f.type === 'ping') {
      ws.send('{"data":{},"type":"pong"}');
    }
  },
}).listen('127.0.0.1', port, (token) => {
  if (!token) { console.error(`uws peer: cannot listen on ${port}`); process.exit(1); }
  console.log(`uws peer listening on 127.0.0.1:${port}`);
});
