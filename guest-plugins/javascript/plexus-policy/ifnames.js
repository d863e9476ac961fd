// Interface names inside the pod: checking them and handing out `eth1`, `net1`, ...
import { debug, hasWhiteSpace, utf8Length } from './text.js';

/** The longest interface name Linux accepts, in bytes (`IFNAMSIZ` minus the NUL). */
export const MAX_LEN = 15;

/**
 * Checks that `name` is an interface name Linux accepts: 1 to 15 bytes, not `.` or `..`,
 * without `/`, `:` or white space. Throws the reason.
 * @param {string} name
 */
export function validate(name) {
  let problem = null;
  if (name === '') problem = 'it is empty';
  else if (utf8Length(name) > MAX_LEN) problem = 'it is longer than 15 bytes';
  else if (name === '.' || name === '..') problem = '`.` and `..` are not interface names';
  else if (name.includes('/') || name.includes(':')) problem = 'it contains `/` or `:`';
  else if (hasWhiteSpace(name)) problem = 'it contains whitespace';
  else if (name.includes('\0')) problem = 'it contains a NUL byte';
  if (problem !== null) throw `invalid interface name ${debug(name)}: ${problem}`;
}

/**
 * Hands out unique interface names for one pod. Claim the fixed names (asked for by the
 * pod, or `CNI_IFNAME`) with `claim` first, then draw generated ones with `next`, which
 * skips every name already claimed.
 */
export class IfnameAllocator {
  /** Each claimed name with what claimed it, so a clash can name both claimants. */
  #claimed = new Map();

  /** Whether `name` has been claimed or handed out. */
  isTaken(name) {
    return this.#claimed.has(name);
  }

  /**
   * Takes `name` for `owner` (a network name, or whatever tells the user who asked for it).
   * Throws if the name is invalid or already taken; the error names both owners.
   */
  claim(name, owner) {
    try {
      validate(name);
    } catch (error) {
      throw `${owner}: ${error}`;
    }
    if (this.#claimed.has(name)) {
      throw `interface name ${debug(name)} is used twice: by ${this.#claimed.get(name)} and by ${owner}`;
    }
    this.#claimed.set(name, owner);
  }

  /** Takes and returns the first free name `<prefix>1`, `<prefix>2`, ... for `owner`. */
  next(prefix, owner) {
    // Among one more candidate than there are claimed names, one is always free.
    for (let index = 1; index <= this.#claimed.size + 1; index++) {
      const name = `${prefix}${index}`;
      if (!this.isTaken(name)) {
        this.claim(name, owner);
        return name;
      }
    }
    throw `${owner}: no free interface name starts with ${debug(prefix)}`;
  }
}

/**
 * Checks the interface names of a selector's answer: each valid, none used twice. Errors
 * name the attachment's network file.
 * @param {import('./types.js').Attachment[]} attachments
 */
export function checkAttachments(attachments) {
  const allocator = new IfnameAllocator();
  for (const { ifname, networkFile } of attachments) allocator.claim(ifname, networkFile);
}
