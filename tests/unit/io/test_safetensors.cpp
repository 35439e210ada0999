// safetensors reader/writer, sharded checkpoints, open_checkpoint, HF config, page cache.
#include "io_test_util.hpp"

#include "qbench/io/hf_config.hpp"
#include "qbench/io/page_cache.hpp"
#include "qbench/io/safetensors.hpp"
#include "qbench/io/safetensors_writer.hpp"
#include "qbench/io/sharded_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <set>

using namespace qbench;
using namespace qbench::test;

namespace {

const std::string k_bad = "bad.safetensors";

input_error parse_error_of(const raw_file& f) {
    return expect_input_error([&] { parse_safetensors_header(f.bytes, f.bytes.size(), k_bad); });
}

std::map<std::string, host_tensor> every_dtype_tensors() {
    std::map<std::string, host_tensor> m;
    std::uint64_t seed = 1;
    for (const auto& row : dtype_table()) {
        const std::string n(row.name);
        m.emplace("matrix_" + n, random_tensor(row.id, {3, 5}, seed++));
        m.emplace("scalar_" + n, random_tensor(row.id, {}, seed++));
        m.emplace("empty_" + n, random_tensor(row.id, {0, 4}, seed++));
        m.emplace("vector_" + n, random_tensor(row.id, {7}, seed++));
    }
    return m;
}

void check_same(const tensor_source& src, const std::map<std::string, host_tensor>& expected) {
    CHECK(src.names().size() == expected.size());
    std::uint64_t total = 0;
    for (const auto& [name, t] : expected) {
        INFO("tensor " << name);
        const tensor_info* info = src.find(name);
        REQUIRE(info != nullptr);
        CHECK(info->type == t.type);
        CHECK(info->shape == t.shape);
        CHECK(info->byte_size == t.data.size());
        const host_tensor back = src.read(name);
        CHECK(back.type == t.type);
        CHECK(back.shape == t.shape);
        CHECK(back.data == t.data);
        total += t.data.size();
    }
    CHECK(src.total_bytes() == total);
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, 0-rank and zero-size tensors", "[cpu][io]") {
    scratch_dir dir;
    const auto tensors = every_dtype_tensors();
    const std::map<std::string, std::string> metadata{{"format", "pt"}, {"note", "round trip"}};
    const auto file = dir / "all.safetensors";
    write_safetensors(file, tensors, metadata);

    safetensors_file src(file);
    check_same(src, tensors);
    CHECK(src.metadata() == metadata);
    CHECK(src.find("missing") == nullptr);
    CHECK(src.read("scalar_F64").numel() == 1);
    CHECK(src.read("empty_U8").data.empty());

    // Layout the reference writer produces: data buffer at a multiple of 8, larger elements first, each tensor
    // aligned to its element size.
    const auto& h = src.header();
    CHECK(h.data_start() % 8 == 0);
    CHECK(std::filesystem::file_size(file) == h.data_start() + h.data_bytes());
    std::size_t previous_size = 8;
    for (const auto& e : h.tensors) {
        INFO("tensor " << e.name);
        CHECK(dtype_size(e.type) <= previous_size);
        previous_size = dtype_size(e.type);
        CHECK((h.data_start() + e.begin) % dtype_size(e.type) == 0);
    }

    // read_into fills caller memory and refuses a wrong size.
    std::vector<std::byte> buf(tensors.at("matrix_F32").data.size());
    src.read_into("matrix_F32", buf);
    CHECK(buf == tensors.at("matrix_F32").data);
    std::vector<std::byte> wrong(3);
    CHECK_THROWS_AS(src.read_into("matrix_F32", wrong), error);

    const auto missing = expect_input_error([&] { (void)src.read("nope"); });
    check_error(missing, file.string(), "tensor 'nope'", "not in this checkpoint");

    // The in-memory parser agrees with the file reader.
    const auto bytes = read_bytes(file);
    const auto parsed = parse_safetensors_header(bytes, bytes.size(), "mem");
    CHECK(parsed.tensors.size() == tensors.size());
    CHECK(parsed.header_bytes == h.header_bytes);
}

TEST_CASE("safetensors: a file with no tensors, and third-party layouts", "[cpu][io]") {
    scratch_dir dir;
    SECTION("metadata only") {
        write_safetensors(dir / "empty.safetensors", {}, {{"format", "pt"}});
        safetensors_file src(dir / "empty.safetensors");
        CHECK(src.names().empty());
        CHECK(src.total_bytes() == 0);
        CHECK(src.metadata().at("format") == "pt");
    }
    SECTION("unpadded header, entries listed out of offset order, trailing spaces, no metadata") {
        // b holds bytes [0, 2) as one U16, a holds [2, 10) as two F32: not the reference writer's order.
        auto f = make_raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[2,10]},)"
                          R"("b":{"dtype":"U16","shape":[],"data_offsets":[0,2]}}   )",
                          10, /*pad=*/false);
        const auto p = dir / "third_party.safetensors";
        write_bytes(p, f.bytes);
        safetensors_file src(p);
        CHECK(src.names() == std::vector<std::string>{"a", "b"});
        CHECK(src.metadata().empty());
        CHECK(src.find("a")->file_offset == f.data_start + 2);
        const auto a = src.read("a");
        REQUIRE(a.data.size() == 8);
        for (std::size_t i = 0; i < 8; ++i) CHECK(std::to_integer<int>(a.data[i]) == static_cast<int>(i + 2));
        CHECK(src.read("b").shape.empty());
    }
    SECTION("zero-size tensors at the same offset as others, and at the end") {
        auto f = make_raw(R"({"z0":{"dtype":"F16","shape":[0],"data_offsets":[0,0]},)"
                          R"("x":{"dtype":"I8","shape":[4],"data_offsets":[0,4]},)"
                          R"("z4":{"dtype":"F64","shape":[2,0],"data_offsets":[4,4]}})",
                          4);
        const auto h = parse_safetensors_header(f.bytes, f.bytes.size(), "zero.safetensors");
        CHECK(h.tensors.size() == 3);
        CHECK(h.data_bytes() == 4);
    }
}

TEST_CASE("safetensors: every malformed header gives an input_error naming the file and place", "[cpu][io]") {
    SECTION("shorter than the size field") {
        raw_file f;
        f.bytes.assign(5, std::byte{0});
        check_error(parse_error_of(f), k_bad, "byte 0", "too short");
    }
    SECTION("header size over 100 MB") {
        auto f = make_raw("{}", 0);
        const std::uint64_t n = 200'000'000;
        for (int i = 0; i < 8; ++i) f.bytes[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
        check_error(parse_error_of(f), k_bad, "byte 0", "exceeds the limit");
    }
    SECTION("header size past the end of the file") {
        auto f = make_raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4);
        f.bytes.resize(20);  // cut inside the header
        check_error(parse_error_of(f), k_bad, "byte 0", "runs past the end of the file");
        const std::uint64_t huge = ~std::uint64_t{0};  // 8 + N would wrap around
        for (int i = 0; i < 8; ++i) f.bytes[static_cast<std::size_t>(i)] = static_cast<std::byte>((huge >> (8 * i)) & 0xff);
        check_error(parse_error_of(f), k_bad, "byte 0", "exceeds the limit");
    }
    SECTION("empty header, or not starting with '{'") {
        check_error(parse_error_of(make_raw("", 0, false)), k_bad, "byte 8", "empty");
        check_error(parse_error_of(make_raw(" {}", 0)), k_bad, "byte 8", "starting with '{'");
        check_error(parse_error_of(make_raw("[1, 2]", 0)), k_bad, "byte 8", "starting with '{'");
    }
    SECTION("bad JSON names the byte") {
        const auto e = parse_error_of(make_raw(R"({"a": {"dtype": "F32", )", 0));
        check_error(e, k_bad, "byte ", "malformed JSON");
        // the error is at or after the point where the text stops making sense, inside the header
        const auto pos = std::stoull(e.place().substr(5));
        CHECK(pos >= 8 + 20);
        CHECK(pos <= 8 + 32);
        const auto utf8 = parse_error_of(make_raw("{\"a\": \"\xff\xfe\"}", 0));
        check_error(utf8, k_bad, "byte ", "malformed JSON");
        // the message quotes the bad input escaped, so it stays printable (and encodable into results JSON)
        for (char c : std::string(utf8.what())) CHECK((c >= 0x20 && c < 0x7f));
        check_error(parse_error_of(make_raw("{\"a\": 1e999}", 0)), k_bad, "byte ", "malformed JSON");
        check_error(parse_error_of(make_raw("{\"a\": " + std::string(100, '[') + std::string(100, ']') + "}", 0)),
                    k_bad, "byte 8", "nested deeper than 64");
    }
    SECTION("entry is not an object, has unknown or missing keys") {
        check_error(parse_error_of(make_raw(R"({"a": 5})", 0)), k_bad, "tensor 'a'", "must be an object");
        check_error(parse_error_of(make_raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4)),
                    k_bad, "tensor 'a'", "unknown key 'x'");
        check_error(parse_error_of(make_raw(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4)), k_bad,
                    "tensor 'a'", "missing 'shape'");
    }
    SECTION("unknown or unsupported dtype") {
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4)), k_bad,
                    "tensor 'w'", "unknown dtype 'F17'");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1)), k_bad,
                    "tensor 'w'", "not supported by qbench");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4)), k_bad,
                    "tensor 'w'", "dtype must be a string");
    }
    SECTION("non-integer or negative shape") {
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4)), k_bad,
                    "tensor 'w'", "shape[0] must be a non-negative integer");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F32","shape":[1,-3],"data_offsets":[0,4]}})", 4)),
                    k_bad, "tensor 'w'", "shape[1] is negative");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,4]}})", 4)), k_bad,
                    "tensor 'w'", "shape must be an array");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", 4)),
                    k_bad, "tensor 'w'", "too large");
    }
    SECTION("byte count does not match the shape, overflow-safe") {
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4)), k_bad,
                    "tensor 'w'", "needs 8 bytes but data_offsets [0, 4) hold 4");
        // 2^32 * 2^32 * 4 elements: the product wraps to 0 in 64 bits, matching empty offsets if unchecked.
        check_error(parse_error_of(make_raw(
                        R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}})", 0)),
                    k_bad, "tensor 'w'", "more than 2^63 elements");
        // 2^62 F32 elements = 2^64 bytes: wraps to 0 bytes if unchecked.
        check_error(parse_error_of(make_raw(
                        R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0)),
                    k_bad, "tensor 'w'", "more than 2^64 bytes");
        // A later 0 does not excuse an overflowing prefix (host_tensor::numel would overflow on it).
        check_error(parse_error_of(make_raw(
                        R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0)),
                    k_bad, "tensor 'w'", "more than 2^63 elements");
    }
    SECTION("offsets malformed or out of range") {
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]}})", 4)), k_bad,
                    "tensor 'w'", "array of 3 values");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}})", 8)), k_bad,
                    "tensor 'w'", "end before they begin");
        check_error(parse_error_of(make_raw(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}})", 8)), k_bad,
                    "tensor 'w'", "data_offsets begin is negative");
        const auto f = make_raw(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 4);
        check_error(parse_error_of(f), k_bad, "tensor 'w' at byte " + std::to_string(f.data_start),
                    "reach past the end of the data buffer");
        check_error(parse_error_of(make_raw(
                        R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}})", 4)),
                    k_bad, "tensor 'w'", "reach past the end");
    }
    SECTION("overlapping tensors") {
        const auto f = make_raw(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                                12);
        check_error(parse_error_of(f), k_bad, "tensor 'b' at byte " + std::to_string(f.data_start + 4),
                    "overlap tensor 'a'");
        // A zero-size tensor inside another one overlaps too.
        const auto g = make_raw(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                                R"("z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}})",
                                8);
        check_error(parse_error_of(g), k_bad, "tensor 'z'", "overlap tensor 'a'");
    }
    SECTION("holes in the data buffer") {
        const auto f = make_raw(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
                                12);
        check_error(parse_error_of(f), k_bad, "byte " + std::to_string(f.data_start + 4),
                    "hole of 4 bytes in the data buffer before tensor 'b'");
        const auto g = make_raw(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8);
        check_error(parse_error_of(g), k_bad, "byte " + std::to_string(g.data_start), "before tensor 'a'");
    }
    SECTION("bytes after the last tensor") {
        const auto f = make_raw(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 9);
        check_error(parse_error_of(f), k_bad, "byte " + std::to_string(f.data_start + 4),
                    "5 bytes after the last tensor");
        check_error(parse_error_of(make_raw("{}", 3)), k_bad, "byte ", "3 bytes after the last tensor");
    }
    SECTION("duplicate names and keys") {
        check_error(parse_error_of(make_raw(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                            R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                                            8)),
                    k_bad, "tensor 'a'", "duplicate tensor 'a'");
        check_error(parse_error_of(make_raw(R"({"a":{"dtype":"U8","dtype":"I8","shape":[4],"data_offsets":[0,4]}})", 4)),
                    k_bad, "tensor 'a'", "duplicate key 'dtype'");
    }
    SECTION("__metadata__ must map strings to strings") {
        check_error(parse_error_of(make_raw(R"({"__metadata__":{"format":"pt","n":1}})", 0)), k_bad,
                    "__metadata__ key 'n'", "must be strings");
        check_error(parse_error_of(make_raw(R"({"__metadata__":["pt"]})", 0)), k_bad, "__metadata__",
                    "must be an object");
    }
}

TEST_CASE("safetensors: damaged files on disk", "[cpu][io]") {
    scratch_dir dir;
    const auto good = dir / "good.safetensors";
    std::map<std::string, host_tensor> tensors{{"w", random_tensor(dtype::f16, {16, 8}, 3)},
                                               {"b", random_tensor(dtype::f32, {8}, 4)}};
    write_safetensors(good, tensors);
    const auto bytes = read_bytes(good);
    const auto header = read_safetensors_header(good);

    SECTION("truncated in the data") {
        const auto p = dir / "cut.safetensors";
        write_bytes(p, {bytes.begin(), bytes.end() - 10});
        check_error(expect_input_error([&] { safetensors_file f(p); }), p.string(), "tensor '",
                    "reach past the end of the data buffer");
        // open_checkpoint reports the same
        check_error(expect_input_error([&] { (void)open_checkpoint(p); }), p.string(), "tensor '", "truncated");
    }
    SECTION("truncated in the header") {
        const auto p = dir / "cut_header.safetensors";
        write_bytes(p, {bytes.begin(), bytes.begin() + 30});
        check_error(expect_input_error([&] { safetensors_file f(p); }), p.string(), "byte 0",
                    "runs past the end of the file");
        write_bytes(p, {bytes.begin(), bytes.begin() + 3});
        check_error(expect_input_error([&] { safetensors_file f(p); }), p.string(), "byte 0", "too short");
    }
    SECTION("file shrinks after opening: the read names the tensor") {
        const auto p = dir / "shrinks.safetensors";
        write_bytes(p, bytes);
        safetensors_file f(p);
        std::filesystem::resize_file(p, header.data_start() + 4);
        const std::string first = header.tensors.back().name;  // the last tensor in the file is cut off
        check_error(expect_input_error([&] { (void)f.read(first); }), p.string(), "tensor '" + first + "' at byte",
                    "truncated");
    }
    SECTION("missing file, directory") {
        check_error(expect_input_error([&] { safetensors_file f(dir / "absent.safetensors"); }),
                    (dir / "absent.safetensors").string(), "", "cannot open");
        check_error(expect_input_error([&] { (void)open_checkpoint(dir / "absent"); }), (dir / "absent").string(), "",
                    "no such file");
    }
}

TEST_CASE("safetensors: streaming writer", "[cpu][io]") {
    scratch_dir dir;
    const auto p = dir / "stream.safetensors";
    const auto a = random_tensor(dtype::f16, {4, 6}, 10);
    const auto b = random_tensor(dtype::i64, {3}, 11);
    const auto c = random_tensor(dtype::u8, {5}, 12);
    std::vector<tensor_decl> decls{{"a", dtype::f16, {4, 6}}, {"b", dtype::i64, {3}}, {"c", dtype::u8, {5}}};

    SECTION("any write order; header first from known shapes") {
        safetensors_stream_writer w(p, decls, {{"k", "v"}});
        CHECK(w.file_order() == std::vector<std::string>{"b", "a", "c"});  // by element size, then name
        CHECK_FALSE(std::filesystem::exists(p));                           // nothing visible before finish()
        w.write("c", c);
        w.write("a", std::span<const std::byte>(a.data));
        CHECK_THROWS_AS(w.write("a", a), error);                            // twice
        CHECK_THROWS_AS(w.write("nope", a), error);                         // undeclared
        CHECK_THROWS_AS(w.write("b", c), error);                            // wrong type/shape
        CHECK_THROWS_AS(w.write("b", std::span<const std::byte>(c.data)), error);  // wrong size
        w.write("b", b);
        w.finish();
        CHECK(std::filesystem::file_size(p) == w.file_size());
        safetensors_file src(p);
        check_same(src, {{"a", a}, {"b", b}, {"c", c}});
        CHECK(src.metadata().at("k") == "v");
    }
    SECTION("an unfinished writer leaves nothing behind") {
        {
            safetensors_stream_writer w(p, decls);
            w.write("a", a);
            CHECK_THROWS_AS(w.finish(), error);  // b and c missing
        }
        CHECK_FALSE(std::filesystem::exists(p));
        CHECK(std::filesystem::is_empty(dir.path()));
    }
    SECTION("bad declarations") {
        CHECK_THROWS_AS(safetensors_stream_writer(p, {{"x", dtype::u8, {1}}, {"x", dtype::f32, {1}}}), error);
        CHECK_THROWS_AS(safetensors_stream_writer(p, {{"__metadata__", dtype::u8, {1}}}), error);
        CHECK_THROWS_AS(safetensors_stream_writer(p, {{"x", dtype::u8, {-1}}}), error);
        CHECK(std::filesystem::is_empty(dir.path()));
        std::map<std::string, host_tensor> inconsistent{{"x", host_tensor::zeros(dtype::f32, {2})}};
        inconsistent["x"].data.resize(3);
        CHECK_THROWS_AS(write_safetensors(p, inconsistent), error);
    }
    SECTION("overwriting is atomic and leaves no temporary files") {
        write_safetensors(p, {{"a", a}});
        write_safetensors(p, {{"c", c}});
        safetensors_file src(p);
        check_same(src, {{"c", c}});
        std::size_t files = 0;
        for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
        CHECK(files == 1);
    }
}

TEST_CASE("sharded checkpoints: plan, round trip, index", "[cpu][io]") {
    SECTION("greedy plan; an oversized tensor gets its own shard") {
        std::vector<tensor_decl> d{{"a", dtype::u8, {40}}, {"b", dtype::u8, {50}}, {"c", dtype::u8, {30}},
                                   {"d", dtype::u8, {200}}, {"e", dtype::u8, {10}}};
        const auto plan = plan_shards(d, 100);
        REQUIRE(plan.size() == 4);
        CHECK(plan[0] == std::vector<std::size_t>{0, 1});
        CHECK(plan[1] == std::vector<std::size_t>{2});
        CHECK(plan[2] == std::vector<std::size_t>{3});
        CHECK(plan[3] == std::vector<std::size_t>{4});
        CHECK(shard_file_name(2, 3) == "model-00002-of-00003.safetensors");
    }

    scratch_dir dir;
    std::map<std::string, host_tensor> tensors;
    for (int l = 0; l < 12; ++l)
        tensors.emplace("model.layers." + std::to_string(l) + ".w", random_tensor(dtype::f16, {8, 8}, 100 + l));
    tensors.emplace("model.embed", random_tensor(dtype::f32, {10, 4}, 7));
    tensors.emplace("scalar", random_tensor(dtype::i32, {}, 8));
    tensors.emplace("empty", random_tensor(dtype::f16, {0}, 9));
    const std::map<std::string, std::string> md{{"format", "pt"}};

    SECTION("split over several shards") {
        const auto ckpt = dir / "ckpt";
        const auto opened = write_sharded_checkpoint(ckpt, tensors, md, 400);
        CHECK(opened == ckpt / "model.safetensors.index.json");
        const auto index = nlohmann::json::parse(read_text(opened));
        std::uint64_t total = 0;
        for (const auto& [n, t] : tensors) total += t.data.size();
        CHECK(index["metadata"]["total_size"].get<std::uint64_t>() == total);
        CHECK(index["weight_map"].size() == tensors.size());
        const auto shards = read_checkpoint_index(opened);
        std::set<std::string> files;
        for (const auto& [n, s] : shards.weight_map) files.insert(s);
        CHECK(files.size() > 2);
        CHECK(files.count(shard_file_name(1, files.size())) == 1);
        // layers in model order: layer 2 is in an earlier (or the same) shard than layer 10
        CHECK(shards.weight_map.at("model.layers.2.w") <= shards.weight_map.at("model.layers.10.w"));
        for (const auto& f : files) CHECK(std::filesystem::file_size(ckpt / f) <= 400 + 8 + 2048);

        for (const auto& path : {ckpt, opened}) {
            auto src = open_checkpoint(path);
            check_same(*src, tensors);
            CHECK(src->metadata() == md);
            CHECK(src->path() == opened);
        }
    }
    SECTION("one shard: a single model.safetensors, no index") {
        const auto ckpt = dir / "single";
        (void)write_sharded_checkpoint(ckpt, tensors, md, 400);  // an earlier sharded version is replaced
        const auto opened = write_sharded_checkpoint(ckpt, tensors, md, 1'000'000);
        CHECK(opened == ckpt / "model.safetensors");
        CHECK_FALSE(std::filesystem::exists(ckpt / "model.safetensors.index.json"));
        check_same(*open_checkpoint(ckpt), tensors);
    }
    SECTION("index and shards that disagree") {
        const auto ckpt = dir / "broken";
        const auto index_path = write_sharded_checkpoint(ckpt, tensors, md, 400);
        auto index = nlohmann::json::parse(read_text(index_path));
        const std::string idx = index_path.string();
        const auto rewrite = [&](const nlohmann::json& j) {
            std::ofstream(index_path, std::ios::trunc) << j.dump(2);
        };

        // map "scalar" to a shard that does not hold it
        std::string other;
        for (const auto& [n, s] : index["weight_map"].items())
            if (s != index["weight_map"]["scalar"]) other = s.get<std::string>();
        REQUIRE_FALSE(other.empty());
        auto moved = index;
        moved["weight_map"]["scalar"] = other;
        rewrite(moved);
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }), idx, "tensor 'scalar'",
                    "which does not contain it");

        auto dropped = index;
        dropped["weight_map"].erase("empty");
        rewrite(dropped);
        const auto e = expect_input_error([&] { (void)open_checkpoint(ckpt); });
        CHECK_THAT(e.place(), Catch::Contains("tensor 'empty'"));
        CHECK_THAT(e.message(), Catch::Contains("not mapped to this shard"));

        auto escaping = index;
        escaping["weight_map"]["empty"] = "../model-00001-of-00002.safetensors";
        rewrite(escaping);
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }), idx, "tensor 'empty'",
                    "plain file name");

        auto absent = index;
        absent["weight_map"]["empty"] = "model-00099-of-00099.safetensors";
        rewrite(absent);
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }),
                    (ckpt / "model-00099-of-00099.safetensors").string(), "", "cannot open");

        auto no_map = index;
        no_map.erase("weight_map");
        rewrite(no_map);
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }), idx, "key 'weight_map'", "missing");

        auto bad_total = index;
        bad_total["metadata"]["total_size"] = "big";
        rewrite(bad_total);
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }), idx, "key 'metadata.total_size'",
                    "non-negative integer");

        std::ofstream(index_path, std::ios::trunc) << "{\n  \"weight_map\": {\n    \"a\": \"x\",\n    \"a\": \"y\"\n  }\n}\n";
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }), idx, "key 'weight_map'",
                    "duplicate key 'a'");

        std::ofstream(index_path, std::ios::trunc) << "{\n  \"weight_map\": {\n    \"a\": x\n  }\n}\n";
        check_error(expect_input_error([&] { (void)open_checkpoint(ckpt); }), idx, "line 3, column ",
                    "malformed JSON");
    }
}

TEST_CASE("open_checkpoint: what a directory must hold", "[cpu][io]") {
    scratch_dir dir;
    check_error(expect_input_error([&] { (void)open_checkpoint(dir.path()); }), dir.path().string(), "",
                "no safetensors checkpoint here");
    const auto t = random_tensor(dtype::f32, {2}, 1);
    write_safetensors(dir / "weights.safetensors", {{"t", t}});
    CHECK(open_checkpoint(dir.path())->path() == dir / "weights.safetensors");  // a single *.safetensors
    write_safetensors(dir / "other.safetensors", {{"t", t}});
    check_error(expect_input_error([&] { (void)open_checkpoint(dir.path()); }), dir.path().string(), "",
                "no model.safetensors.index.json");
    write_safetensors(dir / "model.safetensors", {{"t", t}});
    CHECK(open_checkpoint(dir.path())->path() == dir / "model.safetensors");
}

TEST_CASE("hf config: round trip and bad files", "[cpu][io]") {
    scratch_dir dir;
    model_config m;
    m.name = "tiny-gqa";
    m.hf_name = "someone/tiny-gqa";
    m.hidden_size = 64;
    m.intermediate_size = 160;
    m.num_layers = 2;
    m.num_heads = 4;
    m.num_kv_heads = 2;
    m.vocab_size = 32001;
    m.max_position = 512;
    m.rms_norm_eps = 1e-5;
    m.rope_theta = 500000.0;
    m.bos_token_id = 0;
    m.eos_token_id = 1;
    const auto p = dir / "config.json";
    write_hf_config(p, m);
    const auto j = nlohmann::json::parse(read_text(p));
    CHECK(j["architectures"][0] == "LlamaForCausalLM");
    CHECK(j["torch_dtype"] == "float16");
    CHECK(j["num_key_value_heads"] == 2);
    const model_config back = read_hf_config(dir.path());
    CHECK(back.name == m.name);
    CHECK(back.hf_name == m.hf_name);
    CHECK(back.hidden_size == 64);
    CHECK(back.intermediate_size == 160);
    CHECK(back.num_layers == 2);
    CHECK(back.num_heads == 4);
    CHECK(back.num_kv_heads == 2);
    CHECK(back.vocab_size == 32001);
    CHECK(back.max_position == 512);
    CHECK(back.rms_norm_eps == 1e-5);
    CHECK(back.rope_theta == 500000.0);
    CHECK(back.bos_token_id == 0);
    CHECK(back.eos_token_id == 1);

    const auto write = [&](const std::string& text) { std::ofstream(p, std::ios::trunc) << text; };
    const std::string f = p.string();
    // HF defaults: kv heads = heads, eos from a list, name from the directory
    write(R"({"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
              "vocab_size": 101, "eos_token_id": [7, 8], "bos_token_id": null})");
    const auto d = read_hf_config(p);
    CHECK(d.num_kv_heads == 4);
    CHECK(d.eos_token_id == 7);
    CHECK(d.bos_token_id == model_config{}.bos_token_id);
    CHECK(d.name == dir.path().filename().string());

    write(R"({"intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 101})");
    check_error(expect_input_error([&] { (void)read_hf_config(p); }), f, "key 'hidden_size'", "missing");
    write(R"({"hidden_size": 64.5, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 101})");
    check_error(expect_input_error([&] { (void)read_hf_config(p); }), f, "key 'hidden_size'", "must be an integer");
    write(R"({"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 5, "vocab_size": 101})");
    check_error(expect_input_error([&] { (void)read_hf_config(p); }), f, "key 'num_attention_heads'", "does not divide");
    write(R"({"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 3, "vocab_size": 101})");
    check_error(expect_input_error([&] { (void)read_hf_config(p); }), f, "key 'num_key_value_heads'", "does not divide");
    write(R"({"hidden_size": 64, "intermediate_size": 0, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 101})");
    check_error(expect_input_error([&] { (void)read_hf_config(p); }), f, "key 'intermediate_size'", "at least 1");
    write("{\n  \"hidden_size\": 64,\n  \"vocab_size\": ,\n}");
    check_error(expect_input_error([&] { (void)read_hf_config(p); }), f, "line 3, column ", "malformed JSON");
    write(R"({"model_type": "opt", "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
              "num_attention_heads": 4, "vocab_size": 101})");
    CHECK_THROWS_AS(read_hf_config(p), unsupported_error);
    check_error(expect_input_error([&] { (void)read_hf_config(dir / "absent.json"); }),
                (dir / "absent.json").string(), "", "cannot open");
}

TEST_CASE("page cache: eviction of a file and a directory", "[cpu][io]") {
    scratch_dir dir;
    write_safetensors(dir / "a.safetensors", {{"t", random_tensor(dtype::u8, {1 << 20}, 5)}});
    write_safetensors(dir / "sub.safetensors", {{"t", random_tensor(dtype::u8, {1 << 16}, 6)}});
    (void)read_bytes(dir / "a.safetensors");  // make it resident
    const auto before = page_cache_resident_fraction(dir / "a.safetensors");
    REQUIRE(before.has_value());
    CHECK(*before > 0.0);
    const bool evicted = evict_from_page_cache(dir.path());
    if (evicted) {
        // Where eviction is possible it must have happened (tmpfs reports false instead).
        const auto after = page_cache_resident_fraction(dir / "a.safetensors");
        REQUIRE(after.has_value());
        CHECK(*after < 0.5);
        CHECK(evict_from_page_cache(dir / "sub.safetensors"));
    }
    CHECK_FALSE(evict_from_page_cache(dir / "absent"));
    CHECK_FALSE(page_cache_resident_fraction(dir / "absent").has_value());
    // The files are still intact after eviction.
    CHECK(safetensors_file(dir / "a.safetensors").read("t").data.size() == (1u << 20));
}
