/** Whether an object has an enumerable key, without allocating a key list (hot paths). */
export function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}
