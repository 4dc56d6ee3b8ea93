//! Images: baton never pulls unless `pull` says so, and a missing image is reported
//! before a deployment touches anything.

use super::error::{describe, is_not_found};
use super::{DockerError, DockerRuntime, Pull};
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

/// Makes sure `image` is on the engine: pulls it when `pull` allows (`always` pulls only
/// when `deploying`, i.e. once per deployment, not per instance), or reports it missing.
pub(super) async fn ensure_present(
    rt: &DockerRuntime,
    app: &str,
    image: &str,
    deploying: bool,
) -> Result<(), DockerError> {
    let present = match rt.docker.inspect_image(image).await {
        Ok(_) => true,
        Err(e) if is_not_found(&e) => false,
        Err(e) => return Err(rt.api(&format!("look up image {image}"), e)),
    };
    let pull = match rt.spec().pull {
        Pull::Never => false,
        Pull::Missing => !present,
        Pull::Always => deploying || !present,
    };
    if pull {
        return pull_image(rt, image).await;
    }
    if present {
        Ok(())
    } else {
        Err(DockerError::ImageMissing {
            app: app.to_string(),
            image: image.to_string(),
        })
    }
}

async fn pull_image(rt: &DockerRuntime, image: &str) -> Result<(), DockerError> {
    tracing::info!(%image, "pulling image");
    let (repo, tag) = split_reference(image);
    let options = CreateImageOptionsBuilder::new()
        .from_image(repo)
        .tag(tag)
        .build();
    let mut progress = rt.docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        if let Err(e) = step {
            return Err(DockerError::Pull {
                image: image.to_string(),
                detail: describe(&e),
            });
        }
    }
    Ok(())
}

/// `repo[:tag]` → (repo, tag); a digest reference is passed whole; no tag means `latest`.
fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (&image[..name_start + i], &image[name_start + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("myorg/app:v3"), ("myorg/app", "v3"));
        assert_eq!(split_reference("app"), ("app", "latest"));
        assert_eq!(
            split_reference("registry:5000/app:v1"),
            ("registry:5000/app", "v1")
        );
        assert_eq!(
            split_reference("registry:5000/app"),
            ("registry:5000/app", "latest")
        );
        assert_eq!(split_reference("app@sha256:ab"), ("app@sha256:ab", ""));
    }
}
