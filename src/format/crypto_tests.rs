//! Key operation tests: spec vectors T7-T9 (formats.md 11), the golden key file, key-file KDFs
//! and manifest signature checks.

#[path = "../../tests/common/golden.rs"]
mod golden;

use super::*;
use crate::format::manifest::{CryptMode, FileEntry};

fn t7_key() -> CryptConfig {
    CryptConfig::new(std::array::from_fn(|i| i as u8))
}

#[test]
fn t7_derived_identifiers() {
    let c = t7_key();
    assert_eq!(hex::encode(c.id_key()), "7c2c013efd07f3b25717a485263343cd4d292a4b65c200bb3b18ea227abe225c");
    let d = c.keyed_digest(b"hello");
    assert_eq!(d.to_hex(), "e34178a27b992c4a218599bf7f43ed50bc464a03d624d9092306fe2ed74d557e");
    assert_eq!(d.prefix_dir(), "e341");
    assert_eq!(
        c.fingerprint_string(),
        "0e:ab:d4:46:0b:6e:b9:ca:34:50:23:de:e2:b7:78:c7:90:e5:4a:16:83:b9:65:9c:0a:57:ae:19:90:90:15:9b"
    );
    assert_eq!(c.short_key_id(), "0e:ab:d4:46:0b:6e:b9:ca");
    assert_eq!(parse_fingerprint(&c.fingerprint_string()).unwrap(), c.fingerprint());
    assert_eq!(FINGERPRINT_INPUT[..], Sha256::digest(b"Proxmox Backup Encryption Key Fingerprint")[..]);
}

const T8: &str =
    "7b6785be222d4cf0 499d991b 101112131415161718191a1b1c1d1e1f bbe022b70269e0f0d9e91942ac3d0c83 e23f560c88";

#[test]
fn t8_encrypted_blob_of_hello() {
    let c = t7_key();
    let iv = std::array::from_fn(|i| 0x10 + i as u8);
    let blob = c.encrypt_blob_with_iv(b"hello", true, iv).unwrap();
    assert_eq!(hex::encode(&blob), T8.replace(' ', ""));
    assert_eq!(blob::check_crc(&blob).unwrap(), BlobKind::Encrypted);
    assert_eq!(c.decrypt_blob(&blob).unwrap(), b"hello");
    assert_eq!(c.decode_chunk(&blob, &c.keyed_digest(b"hello")).unwrap(), b"hello");
    assert!(matches!(c.decode_chunk(&blob, &Digest::of(b"hello")), Err(CryptError::WrongDigest)));
    // The server sees structure only.
    assert_eq!(blob::verify_chunk(&blob, &Digest([0; 32]), 5).unwrap(), BlobKind::Encrypted);
}

#[test]
fn encrypted_blobs_round_trip_and_detect_tampering() {
    let c = t7_key();
    let data = b"compressible text, compressible text, compressible text".repeat(50);
    let blob = c.encrypt_blob(&data, true).unwrap();
    assert_eq!(blob::kind_of(&blob).unwrap(), BlobKind::EncryptedCompressed);
    assert_eq!(c.decrypt_blob(&blob).unwrap(), data);
    let other = c.encrypt_blob(&data, true).unwrap();
    assert_ne!(blob[12..28], other[12..28], "IVs are random");

    // A flipped tag bit passes the CRC (the tag is outside it) but not GCM.
    let mut bad = blob.clone();
    bad[30] ^= 1;
    assert!(matches!(c.decrypt_blob(&bad), Err(CryptError::Decrypt)));
    let mut bad = blob.clone();
    bad[50] ^= 1;
    assert!(matches!(c.decrypt_blob(&bad), Err(CryptError::Blob(BlobError::WrongCrc))));
    let wrong = CryptConfig::new([7; 32]);
    assert!(matches!(wrong.decrypt_blob(&blob), Err(CryptError::Decrypt)));
    assert!(matches!(c.decrypt_blob(&blob::encode(b"plain", false).unwrap()), Err(CryptError::NotEncrypted)));
    let unc = c.encrypt_blob(&data, false).unwrap();
    assert_eq!(blob::kind_of(&unc).unwrap(), BlobKind::Encrypted);
    assert_eq!(unc.len(), 44 + data.len());
}

fn t9_manifest() -> Manifest {
    let mut unprotected = serde_json::Map::new();
    unprotected.insert("note".into(), "This is not protected by the signature.".into());
    Manifest {
        backup_type: "host".into(),
        backup_id: "elsa".into(),
        backup_time: 1593179765,
        files: vec![
            FileEntry {
                filename: "test1.img.fidx".into(),
                crypt_mode: CryptMode::Encrypt,
                size: 200,
                csum: "01".repeat(32),
            },
            FileEntry { filename: "abc.blob".into(), crypt_mode: CryptMode::None, size: 200, csum: "02".repeat(32) },
        ],
        unprotected,
        signature: None,
    }
}

fn t9_key() -> CryptConfig {
    let mut key = [0u8; 32];
    scrypt::scrypt(b"test", b"", &scrypt::Params::new(16, 8, 1, 32).unwrap(), &mut key).unwrap();
    assert_eq!(hex::encode(key), "28cdb1a3bef39396c3860e00d448fe7a0efd8244486ab6feb30457681d31597e");
    CryptConfig::new(key)
}

#[test]
fn t9_manifest_signature() {
    let c = t9_key();
    let mut m = t9_manifest();
    let canonical = format!(
        "{{\"backup-id\":\"elsa\",\"backup-time\":1593179765,\"backup-type\":\"host\",\"files\":[{{\"crypt-mode\":\"encrypt\",\"csum\":\"{}\",\"filename\":\"test1.img.fidx\",\"size\":200}},{{\"crypt-mode\":\"none\",\"csum\":\"{}\",\"filename\":\"abc.blob\",\"size\":200}}]}}",
        "01".repeat(32),
        "02".repeat(32)
    );
    assert_eq!(String::from_utf8(m.signed_json().unwrap()).unwrap(), canonical);
    c.sign_manifest(&mut m).unwrap();
    assert_eq!(m.signature.as_deref(), Some("d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9"));
    assert_eq!(
        m.unprotected["key-fingerprint"],
        "12:b9:b7:74:bb:3d:89:95:2b:97:cb:c2:82:f0:0c:14:2b:83:ba:7f:96:62:6a:a1:5a:44:9a:63:e8:91:fe:25"
    );
    c.check_manifest(&m).unwrap();

    // Survives a blob round trip and an unprotected edit.
    let mut back = Manifest::from_blob(&m.to_blob()).unwrap();
    back.unprotected.insert("verify_state".into(), serde_json::json!({"state": "ok"}));
    c.check_manifest(&back).unwrap();

    let mut tampered = back.clone();
    tampered.files[1].size = 201;
    assert!(matches!(c.check_manifest(&tampered), Err(CryptError::WrongSignature)));
    assert!(matches!(t7_key().check_manifest(&back), Err(CryptError::WrongFingerprint { .. })));
    let mut unsigned = t9_manifest();
    unsigned.signature = None;
    c.check_manifest(&unsigned).unwrap();
}

#[test]
fn golden_key_file_opens_with_its_fingerprint() {
    let json = std::fs::read(golden::enc_key()).unwrap();
    let kf = KeyFile::parse(&json).unwrap();
    assert_eq!(kf.kdf, None);
    let c = kf.open(None).unwrap();
    assert_eq!(Some(c.fingerprint_string()), kf.fingerprint);
    let mut wrong = kf.clone();
    wrong.fingerprint = Some(t7_key().fingerprint_string());
    assert!(matches!(wrong.open(None), Err(CryptError::WrongFingerprint { .. })));
}

/// Wraps `key` as a key file does, so the unwrap path is checked against an independent
/// composition of the same primitives.
fn wrap(derived: &[u8; 32], key: &[u8; 32]) -> String {
    let iv = [3u8; 16];
    let mut buf = key.to_vec();
    let tag = Aes256Gcm16::new_from_slice(derived)
        .unwrap()
        .encrypt_in_place_detached(Nonce::<U16>::from_slice(&iv), b"", &mut buf)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode([&iv[..], &tag[..], &buf[..]].concat())
}

#[test]
fn key_files_with_a_kdf_need_the_passphrase() {
    let key = [42u8; 32];
    let salt = [5u8; 32];
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);

    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(b"secret phrase", &salt, 1000, &mut derived);
    let json = format!(
        r#"{{"kdf":{{"PBKDF2":{{"iter":1000,"salt":"{}"}}}},"created":"2024-01-01T00:00:00+00:00","modified":"2024-01-01T00:00:00+00:00","data":"{}","fingerprint":"{}"}}"#,
        b64(&salt),
        wrap(&derived, &key),
        CryptConfig::new(key).fingerprint_string()
    );
    let kf = KeyFile::parse(json.as_bytes()).unwrap();
    assert_eq!(kf.open(Some(b"secret phrase")).unwrap().fingerprint(), CryptConfig::new(key).fingerprint());
    assert!(matches!(kf.open(Some(b"wrong phrase")), Err(CryptError::Decrypt)));
    assert!(matches!(kf.open(Some(b"abc")), Err(CryptError::PassphraseTooShort)));
    assert!(matches!(kf.open(None), Err(CryptError::PassphraseRequired)));

    let mut derived = [0u8; 32];
    scrypt::scrypt(b"secret phrase", &salt, &scrypt::Params::new(10, 8, 1, 32).unwrap(), &mut derived).unwrap();
    let json = format!(
        r#"{{"kdf":{{"Scrypt":{{"n":1024,"r":8,"p":1,"salt":"{}"}}}},"data":"{}"}}"#,
        b64(&salt),
        wrap(&derived, &key)
    );
    let kf = KeyFile::parse(json.as_bytes()).unwrap();
    assert_eq!(kf.open(Some(b"secret phrase")).unwrap().fingerprint(), CryptConfig::new(key).fingerprint());

    let greedy = json.replace("\"n\":1024", "\"n\":1073741824");
    assert!(matches!(
        KeyFile::parse(greedy.as_bytes()).unwrap().open(Some(b"secret phrase")),
        Err(CryptError::KeyFile(_))
    ));
    assert!(matches!(KeyFile::parse(b"{\"kdf\":null}"), Err(CryptError::KeyFile(_))));
}
