//! `switchyard ctl storage`: users and images of the network block device
//! (docs/storage-management.md). Sizes are given as bytes or with a binary
//! suffix (`512`, `64M`, `10G`) and shown the same way in tables.
use clap::Subcommand;
use hyper::Method;
use serde_json::{json, Value};

use super::cli::table;
use super::client::{Client, ClientError};
use super::request::segment;

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Users of the block-I/O service: addresses, quota, secret.
    #[command(subcommand)]
    User(UserCommand),
    /// Virtual storage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Unknown files of the images directory: image files no image of this
    /// config database accounts for (left by another database, or before it
    /// was started over). Lists them; --remove or --adopt acts on one.
    Orphans(OrphansArgs),
}

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("act").args(["remove", "adopt"]))]
pub struct OrphansArgs {
    /// Delete this unknown file (its name, e.g. 7.img, or the image id 7 for 7.img).
    #[arg(long, value_name = "FILE")]
    pub remove: Option<String>,
    /// Make this unknown file an image (its size rounded up to 512 bytes);
    /// it keeps its id if this database never gave that id out.
    #[arg(long, value_name = "FILE", requires_all = ["name", "owner"])]
    pub adopt: Option<String>,
    /// With --adopt: the image's name.
    #[arg(long, requires = "adopt")]
    pub name: Option<String>,
    /// With --adopt: the user that owns it (its quota must fit the image).
    #[arg(long, requires = "adopt")]
    pub owner: Option<String>,
    /// With --adopt: make the image read-only.
    #[arg(long, requires = "adopt")]
    pub read_only: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// All users, with the bytes their images take.
    List,
    /// One user.
    Show { name: String },
    /// Create a user; prints its secret, which is shown this once.
    Create {
        /// 1 to 64 characters of A-Z a-z 0-9 . _ -
        name: String,
        /// The addresses its packets may come from (comma-separated).
        #[arg(long = "ip", value_name = "IP,IP,...", required = true)]
        ips: String,
        /// The most bytes its images may have in all: 512, 64M, 10G, ...
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
        quota: u64,
    },
    /// Delete a user that owns no image.
    Delete { name: String },
    /// Replace a user's addresses.
    SetIps {
        name: String,
        #[arg(long = "ip", value_name = "IP,IP,...", required = true)]
        ips: String,
    },
    /// Change a user's quota (not below what its images take).
    SetQuota {
        name: String,
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
        quota: u64,
    },
    /// Give a user a new secret (printed this once); the old one stops working.
    RotateSecret { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// All images, with the bytes their files take and whether a client uses them.
    List,
    /// One image.
    Show { name: String },
    /// Create an empty (sparse) image.
    Create {
        name: String,
        #[arg(long)]
        owner: String,
        /// 512, 64M, 10G, ...: a multiple of 512 bytes.
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
        size: u64,
        #[arg(long)]
        read_only: bool,
    },
    /// Create an image from a copy of a file in the switch's storage.import_dir
    /// (its size rounded up to 512 bytes).
    Import {
        name: String,
        #[arg(long)]
        owner: String,
        /// The file's path relative to storage.import_dir (no "..", no symbolic links).
        #[arg(long, value_name = "PATH")]
        from: String,
        #[arg(long)]
        read_only: bool,
    },
    /// Delete an image no client uses.
    Delete { name: String },
    /// Make an image larger (never smaller).
    Grow {
        name: String,
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
        size: u64,
    },
    /// Copy an image to a new, writable one.
    Clone {
        name: String,
        new_name: String,
        /// The copy's owner [default: the image's].
        #[arg(long)]
        owner: Option<String>,
    },
    /// Make an image read-only (on) or writable (off).
    SetReadOnly {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

/// How a storage reply is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Users,
    /// A user and its secret (create, rotate-secret).
    UserWithSecret,
    Images,
    Orphans,
}

const ORPHAN_COLUMNS: &[&str] = &["file", "size", "usage", "path"];
const USER_COLUMNS: &[&str] = &["name", "id", "ips", "quota", "used", "images"];
const IMAGE_COLUMNS: &[&str] = &["name", "id", "owner", "size", "usage", "read_only", "attached", "file"];

/// "512", "64M", "10G", "1.5T" (binary units) as bytes.
pub fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .map_err(|e| format!("{text:?} is not a size such as 512, 64M or 10G: {e}"))
}

/// Bytes with the largest binary unit that divides them (`10G`), else one
/// decimal (`1.5G`); below 1 KiB as they are.
pub fn human_size(bytes: u64) -> String {
    for (unit, suffix) in [(1u64 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
        if bytes >= unit {
            return if bytes % unit == 0 {
                format!("{}{suffix}", bytes / unit)
            } else {
                format!("{:.1}{suffix}", bytes as f64 / unit as f64)
            };
        }
    }
    bytes.to_string()
}

fn ip_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The reply and how to print it; `Err(line)` for a change without a body.
pub(super) async fn storage(client: &Client, command: &StorageCommand) -> Result<(Value, Result<Shown, String>), ClientError> {
    match command {
        StorageCommand::User(command) => user(client, command).await,
        StorageCommand::Image(command) => image(client, command).await,
        StorageCommand::Orphans(args) => orphans(client, args).await,
    }
}

async fn orphans(client: &Client, args: &OrphansArgs) -> Result<(Value, Result<Shown, String>), ClientError> {
    let one = |file: &str| format!("/v1/storage/orphans/{}", segment(file));
    Ok(match (&args.remove, &args.adopt) {
        (Some(file), _) => {
            client.call(Method::DELETE, &one(file), None).await?;
            let name = if file.bytes().all(|b| b.is_ascii_digit()) { format!("{file}.img") } else { file.clone() };
            (Value::Null, Err(format!("removed unknown file {name}")))
        }
        (None, Some(file)) => {
            let body = json!({"name": args.name, "owner": args.owner, "read_only": args.read_only});
            (client.call(Method::POST, &format!("{}/adopt", one(file)), Some(&body)).await?, Ok(Shown::Images))
        }
        (None, None) => (client.get("/v1/storage/orphans").await?, Ok(Shown::Orphans)),
    })
}

async fn user(client: &Client, command: &UserCommand) -> Result<(Value, Result<Shown, String>), ClientError> {
    let one = |name: &str| format!("/v1/storage/users/{}", segment(name));
    Ok(match command {
        UserCommand::List => (client.get("/v1/storage/users").await?, Ok(Shown::Users)),
        UserCommand::Show { name } => (client.get(&one(name)).await?, Ok(Shown::Users)),
        UserCommand::Create { name, ips, quota } => {
            let body = json!({"name": name, "ips": ip_list(ips), "quota_bytes": quota});
            (client.call(Method::POST, "/v1/storage/users", Some(&body)).await?, Ok(Shown::UserWithSecret))
        }
        UserCommand::Delete { name } => {
            client.call(Method::DELETE, &one(name), None).await?;
            (Value::Null, Err(format!("deleted storage user {name}")))
        }
        UserCommand::SetIps { name, ips } => {
            let body = json!({"ips": ip_list(ips)});
            (client.call(Method::PUT, &format!("{}/ips", one(name)), Some(&body)).await?, Ok(Shown::Users))
        }
        UserCommand::SetQuota { name, quota } => {
            let body = json!({"quota_bytes": quota});
            (client.call(Method::PUT, &format!("{}/quota", one(name)), Some(&body)).await?, Ok(Shown::Users))
        }
        UserCommand::RotateSecret { name } => {
            let path = format!("{}/secret", one(name));
            (client.call(Method::POST, &path, None).await?, Ok(Shown::UserWithSecret))
        }
    })
}

async fn image(client: &Client, command: &ImageCommand) -> Result<(Value, Result<Shown, String>), ClientError> {
    let one = |name: &str| format!("/v1/storage/images/{}", segment(name));
    let shown = Ok(Shown::Images);
    Ok(match command {
        ImageCommand::List => (client.get("/v1/storage/images").await?, shown),
        ImageCommand::Show { name } => (client.get(&one(name)).await?, shown),
        ImageCommand::Create { name, owner, size, read_only } => {
            let body = json!({"name": name, "owner": owner, "size": size, "read_only": read_only});
            (client.call(Method::POST, "/v1/storage/images", Some(&body)).await?, shown)
        }
        ImageCommand::Import { name, owner, from, read_only } => {
            let body = json!({"name": name, "owner": owner, "import_from": from, "read_only": read_only});
            (client.call(Method::POST, "/v1/storage/images", Some(&body)).await?, shown)
        }
        ImageCommand::Delete { name } => {
            client.call(Method::DELETE, &one(name), None).await?;
            (Value::Null, Err(format!("deleted storage image {name}")))
        }
        ImageCommand::Grow { name, size } => {
            let body = json!({"size": size});
            (client.call(Method::POST, &format!("{}/grow", one(name)), Some(&body)).await?, shown)
        }
        ImageCommand::Clone { name, new_name, owner } => {
            let body = json!({"name": new_name, "owner": owner});
            (client.call(Method::POST, &format!("{}/clone", one(name)), Some(&body)).await?, shown)
        }
        ImageCommand::SetReadOnly { name, state } => {
            let body = json!({"read_only": state == "on"});
            (client.call(Method::PUT, &format!("{}/read-only", one(name)), Some(&body)).await?, shown)
        }
    })
}

/// A reply as a table (sizes in binary units), and a created or rotated
/// user's secret on a line of its own.
pub(super) fn render(shown: Shown, value: &Value) -> String {
    let rows = match value {
        Value::Array(rows) => rows.as_slice(),
        one => std::slice::from_ref(one),
    };
    match shown {
        Shown::Users | Shown::UserWithSecret => {
            let mut text = table(USER_COLUMNS, &with_sizes(rows, &[("quota", "quota_bytes"), ("used", "used_bytes")]));
            if let (Shown::UserWithSecret, Some(secret)) = (shown, value["secret"].as_str()) {
                text.push_str(&format!(
                    "secret {secret}\n(shown this once: give it to the user's client; rotate-secret makes a new one)\n"
                ));
            }
            text
        }
        Shown::Images => table(IMAGE_COLUMNS, &with_sizes(rows, &[("size", "size"), ("usage", "usage")])),
        Shown::Orphans => table(ORPHAN_COLUMNS, &with_sizes(rows, &[("size", "bytes"), ("usage", "usage")])),
    }
}

/// `rows` with each (column, field) pair's byte count as a human size in `column`.
fn with_sizes(rows: &[Value], sizes: &[(&str, &str)]) -> Vec<Value> {
    rows.iter()
        .map(|row| {
            let mut shown = row.clone();
            for (column, field) in sizes {
                shown[*column] = row[*field].as_u64().map_or(Value::Null, |bytes| json!(human_size(bytes)));
            }
            shown
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_in_binary_units() {
        assert_eq!(parse_size_arg("512"), Ok(512));
        assert_eq!(parse_size_arg("64M"), Ok(64 << 20));
        assert_eq!(parse_size_arg("10G"), Ok(10 << 30));
        assert_eq!(parse_size_arg("1GiB"), Ok(1 << 30));
        assert!(parse_size_arg("ten").unwrap_err().starts_with("\"ten\" is not a size such as 512, 64M or 10G"));
        assert!(parse_size_arg("").is_err());
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(512), "512");
        assert_eq!(human_size(64 << 20), "64M");
        assert_eq!(human_size(10 << 30), "10G");
        assert_eq!(human_size(3 << 29), "1.5G");
        assert_eq!(human_size(1 << 40), "1T");
    }

    #[test]
    fn tables_show_sizes_and_the_secret_once() {
        let user = json!({"name": "alice", "id": 1, "ips": ["10.0.0.5", "10.0.0.6"], "quota_bytes": 10u64 << 30,
            "used_bytes": 64u64 << 20, "images": ["disk"], "secret": "ab".repeat(32)});
        assert_eq!(
            render(Shown::Users, &json!([user])),
            "NAME   ID  IPS                QUOTA  USED  IMAGES\nalice  1   10.0.0.5,10.0.0.6  10G    64M   disk\n"
        );
        let text = render(Shown::UserWithSecret, &user);
        assert!(text.ends_with(&format!("secret {}\n(shown this once: give it to the user's client; rotate-secret makes a new one)\n", "ab".repeat(32))), "{text}");
        let image = json!({"name": "disk", "id": 3, "owner": "alice", "size": 64u64 << 20, "usage": null,
            "read_only": false, "attached": true, "file": "/srv/3.img", "last_used_unix_ms": 5});
        assert_eq!(
            render(Shown::Images, &image),
            "NAME  ID  OWNER  SIZE  USAGE  READ_ONLY  ATTACHED  FILE\ndisk  3   alice  64M   -      false      true      /srv/3.img\n"
        );
    }
}
