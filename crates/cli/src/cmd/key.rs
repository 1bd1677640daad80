//! `lifeboat key list | add | remove | passwd`: the passwords that open the repository
//! (restic's key files). Rotation never re-encrypts data: every key unlocks the same master
//! key. The last key and the key in use are never removed.

use serde_json::json;

use crate::context::GlobalArgs;
use crate::exit::Code;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Every key, the one in use marked, with where, by whom and when it was made
    List,
    /// Add a key opened by the password in FILE
    Add(NewPassword),
    /// Remove a key (by id; a unique prefix is enough). Not the last one, not the one in use
    Remove(RemoveArgs),
    /// Change the password: add a key for the new one, then remove the key in use
    Passwd(NewPassword),
}

#[derive(clap::Args, Debug)]
pub struct NewPassword {
    /// File holding the new password (its first line)
    #[arg(long, value_name = "FILE")]
    pub new_password_file: std::path::PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    /// The key's id, or a unique prefix of it (see `lifeboat key list`)
    pub id: String,
}

fn new_password(a: &NewPassword) -> anyhow::Result<String> {
    lifeboat_repo::s3::read_secret_file(&a.new_password_file)
        .map_err(|why| anyhow::anyhow!("--new-password-file: {why}; nothing was changed"))
}

pub fn run(g: &GlobalArgs, c: &Command) -> anyhow::Result<Code> {
    let repo = g.open_repo()?;
    match c {
        Command::List => {
            let keys = repo.keys()?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&json!({"keys": keys}))?);
            } else {
                println!(
                    "{:<2} {:<10} {:<16} {:<10} CREATED",
                    "", "ID", "HOST", "USER"
                );
                for k in &keys {
                    println!(
                        "{:<2} {:<10} {:<16} {:<10} {}",
                        if k.current { "*" } else { "" },
                        &k.id[..8.min(k.id.len())],
                        k.hostname.as_deref().unwrap_or("-"),
                        k.username.as_deref().unwrap_or("-"),
                        k.created.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        Command::Add(a) => {
            let id = repo.add_key(&new_password(a)?)?;
            if g.json {
                println!("{}", json!({"added": id}));
            } else {
                println!("added key {id}");
            }
        }
        Command::Remove(a) => {
            let id = repo.remove_key(&a.id)?;
            if g.json {
                println!("{}", json!({"removed": id}));
            } else {
                println!("removed key {id}");
            }
        }
        Command::Passwd(a) => {
            let password = new_password(a)?;
            let old = repo
                .keys()?
                .into_iter()
                .find(|k| k.current)
                .map(|k| k.id)
                .ok_or_else(|| {
                    anyhow::anyhow!("the key in use is not listed; nothing was changed")
                })?;
            let added = repo.add_key(&password)?;
            // The old key goes only once the new password is proven to open the repository.
            let t = g.target(g.from.as_deref())?;
            let reopened = lifeboat_repo::RusticRepository::open_with(
                &t.location,
                &password,
                None,
                t.settings.clone(),
            )?;
            reopened.remove_key(&old)?;
            if g.json {
                println!("{}", json!({"added": added, "removed": old}));
            } else {
                println!(
                    "password changed: key {added} added, key {old} removed; the old password \
                     no longer opens the repository (update LIFEBOAT_PASSWORD_FILE or the key \
                     file to the new one)"
                );
            }
        }
    }
    Ok(Code::Ok)
}
