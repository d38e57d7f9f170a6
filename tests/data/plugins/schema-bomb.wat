;; check `gate` declares a 2587-byte parameter schema of 40 levels of
;; `allOf: [{$ref: next}, {$ref: next}]`: 2^40 schema nodes once its
;; references are followed (jsonschema's time doubles per level).
;;@replace describe
    (func (export "describe") (result i32)
      ;; plugin-info at 1024
      (i32.store (i32.const 1024) (i32.const 2048)) (i32.store (i32.const 1028) (i32.const 7))
      (i32.store (i32.const 1032) (i32.const 2056)) (i32.store (i32.const 1036) (i32.const 5))
      (i32.store (i32.const 1040) (i32.const 2064)) (i32.store (i32.const 1044) (i32.const 0))
      (i32.store (i32.const 1048) (i32.const 1100)) (i32.store (i32.const 1052) (i32.const 1))
      (i32.store (i32.const 1056) (i32.const 1132)) (i32.store (i32.const 1060) (i32.const 1))
      (i32.store (i32.const 1064) (i32.const 1160)) (i32.store (i32.const 1068) (i32.const 1))
      (i32.store8 (i32.const 1072) (i32.const 1))
      ;; check-info `gate` at 1100
      (i32.store (i32.const 1100) (i32.const 2070)) (i32.store (i32.const 1104) (i32.const 4))
      (i32.store (i32.const 1108) (i32.const 2064)) (i32.store (i32.const 1112) (i32.const 0))
      (i32.store (i32.const 1116) (i32.const 5000)) (i32.store (i32.const 1120) (i32.const 2587))
      ;; operation-info `split` at 1132
      (i32.store8 (i32.const 1132) (i32.const 0))
      (i32.store (i32.const 1136) (i32.const 2064)) (i32.store (i32.const 1140) (i32.const 0))
      (i32.store (i32.const 1144) (i32.const 2080)) (i32.store (i32.const 1148) (i32.const 2))
      ;; installer-info `sim` at 1160
      (i32.store (i32.const 1160) (i32.const 2090)) (i32.store (i32.const 1164) (i32.const 3))
      (i32.store (i32.const 1168) (i32.const 2064)) (i32.store (i32.const 1172) (i32.const 0))
      (i32.store (i32.const 1176) (i32.const 2080)) (i32.store (i32.const 1180) (i32.const 2))
      (i32.const 1024))
    ;;@replace extra
(data (i32.const 5000) "{\"$ref\":\"#/$defs/d0\",\"$defs\":{\"d0\":{\"allOf\":[{\"$ref\":\"#/$defs/d1\"},{\"$ref\":\"#/$defs/d1\"}]},\"d1\":{\"allOf\":[{\"$ref\":\"#/$defs/d2\"},{\"$ref\":\"#/$defs/d2\"}]},\"d2\":{\"allOf\":[{\"$ref\":\"#/$defs/d3\"},{\"$ref\":\"#/$defs/d3\"}]},\"d3\":{\"allOf\":[{\"$ref\":\"#/$defs/d4\"},{\"$ref\":\"#/$defs/d4\"}]},\"d4\":{\"allOf\":[{\"$ref\":\"#/$defs/d5\"},{\"$ref\":\"#/$defs/d5\"}]},\"d5\":{\"allOf\":[{\"$ref\":\"#/$defs/d6\"},{\"$ref\":\"#/$defs/d6\"}]},\"d6\":{\"allOf\":[{\"$ref\":\"#/$defs/d7\"},{\"$ref\":\"#/$defs/d7\"}]},\"d7\":{\"allOf\":[{\"$ref\":\"#/$defs/d8\"},{\"$ref\":\"#/$defs/d8\"}]},\"d8\":{\"allOf\":[{\"$ref\":\"#/$defs/d9\"},{\"$ref\":\"#/$defs/d9\"}]},\"d9\":{\"allOf\":[{\"$ref\":\"#/$defs/d10\"},{\"$ref\":\"#/$defs/d10\"}]},\"d10\":{\"allOf\":[{\"$ref\":\"#/$defs/d11\"},{\"$ref\":\"#/$defs/d11\"}]},\"d11\":{\"allOf\":[{\"$ref\":\"#/$defs/d12\"},{\"$ref\":\"#/$defs/d12\"}]},\"d12\":{\"allOf\":[{\"$ref\":\"#/$defs/d13\"},{\"$ref\":\"#/$defs/d13\"}]},\"d13\":{\"allOf\":[{\"$ref\":\"#/$defs/d14\"},{\"$ref\":\"#/$defs/d14\"}]},\"d14\":{\"allOf\":[{\"$ref\":\"#/$defs/d15\"},{\"$ref\":\"#/$defs/d15\"}]},\"d15\":{\"allOf\":[{\"$ref\":\"#/$defs/d16\"},{\"$ref\":\"#/$defs/d16\"}]},\"d16\":{\"allOf\":[{\"$ref\":\"#/$defs/d17\"},{\"$ref\":\"#/$defs/d17\"}]},\"d17\":{\"allOf\":[{\"$ref\":\"#/$defs/d18\"},{\"$ref\":\"#/$defs/d18\"}]},\"d18\":{\"allOf\":[{\"$ref\":\"#/$defs/d19\"},{\"$ref\":\"#/$defs/d19\"}]},\"d19\":{\"allOf\":[{\"$ref\":\"#/$defs/d20\"},{\"$ref\":\"#/$defs/d20\"}]},\"d20\":{\"allOf\":[{\"$ref\":\"#/$defs/d21\"},{\"$ref\":\"#/$defs/d21\"}]},\"d21\":{\"allOf\":[{\"$ref\":\"#/$defs/d22\"},{\"$ref\":\"#/$defs/d22\"}]},\"d22\":{\"allOf\":[{\"$ref\":\"#/$defs/d23\"},{\"$ref\":\"#/$defs/d23\"}]},\"d23\":{\"allOf\":[{\"$ref\":\"#/$defs/d24\"},{\"$ref\":\"#/$defs/d24\"}]},\"d24\":{\"allOf\":[{\"$ref\":\"#/$defs/d25\"},{\"$ref\":\"#/$defs/d25\"}]},\"d25\":{\"allOf\":[{\"$ref\":\"#/$defs/d26\"},{\"$ref\":\"#/$defs/d26\"}]},\"d26\":{\"allOf\":[{\"$ref\":\"#/$defs/d27\"},{\"$ref\":\"#/$defs/d27\"}]},\"d27\":{\"allOf\":[{\"$ref\":\"#/$defs/d28\"},{\"$ref\":\"#/$defs/d28\"}]},\"d28\":{\"allOf\":[{\"$ref\":\"#/$defs/d29\"},{\"$ref\":\"#/$defs/d29\"}]},\"d29\":{\"allOf\":[{\"$ref\":\"#/$defs/d30\"},{\"$ref\":\"#/$defs/d30\"}]},\"d30\":{\"allOf\":[{\"$ref\":\"#/$defs/d31\"},{\"$ref\":\"#/$defs/d31\"}]},\"d31\":{\"allOf\":[{\"$ref\":\"#/$defs/d32\"},{\"$ref\":\"#/$defs/d32\"}]},\"d32\":{\"allOf\":[{\"$ref\":\"#/$defs/d33\"},{\"$ref\":\"#/$defs/d33\"}]},\"d33\":{\"allOf\":[{\"$ref\":\"#/$defs/d34\"},{\"$ref\":\"#/$defs/d34\"}]},\"d34\":{\"allOf\":[{\"$ref\":\"#/$defs/d35\"},{\"$ref\":\"#/$defs/d35\"}]},\"d35\":{\"allOf\":[{\"$ref\":\"#/$defs/d36\"},{\"$ref\":\"#/$defs/d36\"}]},\"d36\":{\"allOf\":[{\"$ref\":\"#/$defs/d37\"},{\"$ref\":\"#/$defs/d37\"}]},\"d37\":{\"allOf\":[{\"$ref\":\"#/$defs/d38\"},{\"$ref\":\"#/$defs/d38\"}]},\"d38\":{\"allOf\":[{\"$ref\":\"#/$defs/d39\"},{\"$ref\":\"#/$defs/d39\"}]},\"d39\":{\"allOf\":[{\"$ref\":\"#/$defs/d40\"},{\"$ref\":\"#/$defs/d40\"}]},\"d40\":{\"type\":\"object\"}}}")
