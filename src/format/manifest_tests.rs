//! Manifest tests: PBS's exact pretty output, defaults, kept and dropped keys, parse errors.

use super::*;

const PBS_TEXT: &str = r#"{
  "backup-id": "elsa",
  "backup-time": 1593179765,
  "backup-type": "host",
  "files": [
    {
      "crypt-mode": "none",
      "csum": "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50",
      "filename": "disk.img.fidx",
      "size": 5
    }
  ],
  "signature": null,
  "unprotected": {
    "chunk_upload_stats": {
      "compressed_size": 17,
      "count": 1,
      "duplicates": 0,
      "size": 5
    },
    "verify_state": {
      "state": "ok",
      "upid": "UPID:pbs:00000A6C:000011D7:00000002:6553F164:verify:store1:root@pam:"
    }
  }
}"#;

#[test]
fn rewrite_is_byte_identical_to_pbs() {
    let m = Manifest::from_json(PBS_TEXT.as_bytes()).unwrap();
    assert_eq!(m.files[0].crypt_mode, CryptMode::None);
    assert_eq!(m.file("disk.img.fidx").unwrap().size, 5);
    assert_eq!(String::from_utf8(m.to_json()).unwrap(), PBS_TEXT);
    let blob = m.to_blob();
    assert_eq!(blob::kind_of(&blob).unwrap(), blob::BlobKind::Compressed);
    assert_eq!(Manifest::from_blob(&blob).unwrap(), m);
}

#[test]
fn defaults_and_unknown_keys() {
    // Keys in any order, no crypt-mode, no unprotected, no signature, an unknown top-level key
    // and an unknown file key (both dropped), uppercase csum (lowercased as the reference does).
    let text = format!(
        r#"{{"files":[{{"filename":"a.blob","size":17,"csum":"{}","extra":1}}],"backup-time":5,
            "backup-type":"ct","backup-id":"100","future":true}}"#,
        "AB".repeat(32)
    );
    let m = Manifest::from_json(text.as_bytes()).unwrap();
    assert_eq!(m.files[0].crypt_mode, CryptMode::None);
    assert_eq!(m.files[0].csum, "ab".repeat(32));
    assert!(m.unprotected.is_empty() && m.signature.is_none());
    let out = String::from_utf8(m.to_json()).unwrap();
    assert!(!out.contains("future") && !out.contains("extra"), "{out}");
    assert!(out.contains("\"signature\": null") && out.contains("\"unprotected\": {}"), "{out}");

    // Unknown unprotected keys survive, nested objects come out sorted.
    let mut m = Manifest::from_json(PBS_TEXT.as_bytes()).unwrap();
    m.unprotected.insert("zz-custom".into(), serde_json::json!({"b": 1, "a": [true]}));
    let back = Manifest::from_json(&m.to_json()).unwrap();
    assert_eq!(back.unprotected["zz-custom"], serde_json::json!({"a": [true], "b": 1}));
    let text = String::from_utf8(back.to_json()).unwrap();
    assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
}

#[test]
fn parse_errors_are_refused_with_the_reference_prefix() {
    let cases: Vec<String> = vec![
        "not json".into(),
        PBS_TEXT.replace("\"host\"", "\"vmx\""),
        PBS_TEXT.replace("\"none\"", "\"plain\""),
        PBS_TEXT.replace("\"backup-id\": \"elsa\",", ""),
        PBS_TEXT.replace("\"size\": 5\n", "\"size\": -5\n"),
        PBS_TEXT.replace("9595c9df", "9595c9dx"),
        PBS_TEXT.replace("9595c9df", "9595c9"),
        format!("{PBS_TEXT} trailing"),
    ];
    for c in cases {
        let e = Manifest::from_json(c.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("unable to parse manifest - "), "{e}");
    }
    let mut bad = Manifest::from_json(PBS_TEXT.as_bytes()).unwrap().to_blob();
    let n = bad.len() - 1;
    bad[n] ^= 1;
    assert!(matches!(Manifest::from_blob(&bad), Err(ManifestError::Blob(blob::BlobError::WrongCrc))));
}

#[test]
fn canonical_json_sorts_escapes_and_refuses_null() {
    let v = serde_json::json!({"b": "tab\there \u{1} é", "a": [1, {"d": 2, "c": 3}]});
    assert_eq!(
        String::from_utf8(canonical_json(&v).unwrap()).unwrap(),
        "{\"a\":[1,{\"c\":3,\"d\":2}],\"b\":\"tab\\there \\u0001 é\"}"
    );
    assert!(canonical_json(&serde_json::json!({"a": [null]})).is_err());
}
