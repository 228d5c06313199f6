export * from './codec.js';
export * from './errors.js';
export * from './frame.js';
export * from './limits.js';
export * from './gen/grapevine/v1/grapevine_pb.js';
