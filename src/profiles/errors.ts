// Profiling that cannot run as asked (a bad option, an example too long for the context, a model
// that cannot be steered): the message alone is for the user.
import { UserError } from "../errors.js";
export class ProfileError extends UserError {
  override name = "ProfileError";
}
