//! What a test does when the machine lacks something it needs (root, loop devices, a tool):
//! it says so and passes, except under `CI=true`, where every test must run and a missing
//! capability fails it. One rule for every test suite of the workspace.

/// Whether a test needing `capability` can run: `Ok` runs. Otherwise prints
/// `SKIPPED: <why>` and returns false, or panics under `CI=true`.
pub fn runnable(capability: Result<(), String>) -> bool {
    match capability {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but this test cannot run here: {why}")
        }
        Err(why) => {
            println!("SKIPPED: {why}");
            false
        }
    }
}
