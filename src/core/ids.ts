/** Node ids: 1-64 characters of [A-Za-z0-9_.-] (DESIGN.md section 1). */
export const NODE_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export function isValidNodeId(id: string): boolean {
  return NODE_ID_PATTERN.test(id);
}

/** Cluster names follow the node id rule, so they fit in logs and file names. */
export function isValidClusterName(name: string): boolean {
  return NODE_ID_PATTERN.test(name);
}
