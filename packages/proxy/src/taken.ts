/**
 * A kept connection (parked or spare) taken out of its pool and still watched while its carrier may be checked:
 * claim() stops the watch and says whether it may go to a client. False when the server closed it or sent
 * something out of turn since it was taken (it is closed then): a client would only read that close.
 */
export interface Taken<T> {
  connection: T;
  claim(): boolean;
}
