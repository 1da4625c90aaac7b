//! ISO 3166-1 country codes: the alpha-3 form that shops and seed data use
//! (`USA`, `DEU`) mapped to the alpha-2 form orders store (`US`, `DE`).

/// Every officially assigned ISO 3166-1 country as `alpha-3 alpha-2`.
const CODES: &str = "AFG AF,ALA AX,ALB AL,DZA DZ,ASM AS,AND AD,AGO AO,AIA AI,ATA AQ,ATG AG,\
ARG AR,ARM AM,ABW AW,AUS AU,AUT AT,AZE AZ,BHS BS,BHR BH,BGD BD,BRB BB,BLR BY,BEL BE,BLZ BZ,\
BEN BJ,BMU BM,BTN BT,BOL BO,BES BQ,BIH BA,BWA BW,BVT BV,BRA BR,IOT IO,BRN BN,BGR BG,BFA BF,\
BDI BI,CPV CV,KHM KH,CMR CM,CAN CA,CYM KY,CAF CF,TCD TD,CHL CL,CHN CN,CXR CX,CCK CC,COL CO,\
COM KM,COG CG,COD CD,COK CK,CRI CR,CIV CI,HRV HR,CUB CU,CUW CW,CYP CY,CZE CZ,DNK DK,DJI DJ,\
DMA DM,DOM DO,ECU EC,EGY EG,SLV SV,GNQ GQ,ERI ER,EST EE,SWZ SZ,ETH ET,FLK FK,FRO FO,FJI FJ,\
FIN FI,FRA FR,GUF GF,PYF PF,ATF TF,GAB GA,GMB GM,GEO GE,DEU DE,GHA GH,GIB GI,GRC GR,GRL GL,\
GRD GD,GLP GP,GUM GU,GTM GT,GGY GG,GIN GN,GNB GW,GUY GY,HTI HT,HMD HM,VAT VA,HND HN,HKG HK,\
HUN HU,ISL IS,IND IN,IDN ID,IRN IR,IRQ IQ,IRL IE,IMN IM,ISR IL,ITA IT,JAM JM,JPN JP,JEY JE,\
JOR JO,KAZ KZ,KEN KE,KIR KI,PRK KP,KOR KR,KWT KW,KGZ KG,LAO LA,LVA LV,LBN LB,LSO LS,LBR LR,\
LBY LY,LIE LI,LTU LT,LUX LU,MAC MO,MDG MG,MWI MW,MYS MY,MDV MV,MLI ML,MLT MT,MHL MH,MTQ MQ,\
MRT MR,MUS MU,MYT YT,MEX MX,FSM FM,MDA MD,MCO MC,MNG MN,MNE ME,MSR MS,MAR MA,MOZ MZ,MMR MM,\
NAM NA,NRU NR,NPL NP,NLD NL,NCL NC,NZL NZ,NIC NI,NER NE,NGA NG,NIU NU,NFK NF,MKD MK,MNP MP,\
NOR NO,OMN OM,PAK PK,PLW PW,PSE PS,PAN PA,PNG PG,PRY PY,PER PE,PHL PH,PCN PN,POL PL,PRT PT,\
PRI PR,QAT QA,REU RE,ROU RO,RUS RU,RWA RW,BLM BL,SHN SH,KNA KN,LCA LC,MAF MF,SPM PM,VCT VC,\
WSM WS,SMR SM,STP ST,SAU SA,SEN SN,SRB RS,SYC SC,SLE SL,SGP SG,SXM SX,SVK SK,SVN SI,SLB SB,\
SOM SO,ZAF ZA,SGS GS,SSD SS,ESP ES,LKA LK,SDN SD,SUR SR,SJM SJ,SWE SE,CHE CH,SYR SY,TWN TW,\
TJK TJ,TZA TZ,THA TH,TLS TL,TGO TG,TKL TK,TON TO,TTO TT,TUN TN,TUR TR,TKM TM,TCA TC,TUV TV,\
UGA UG,UKR UA,ARE AE,GBR GB,USA US,UMI UM,URY UY,UZB UZ,VUT VU,VEN VE,VNM VN,VGB VG,VIR VI,\
WLF WF,ESH EH,YEM YE,ZMB ZM,ZWE ZW";

/// The alpha-2 code of a country given as alpha-2 or alpha-3, in any case
/// (`us`, `US`, `USA` → `US`); `None` for anything that is not an assigned
/// code.
pub fn alpha2(code: &str) -> Option<&'static str> {
    let up = code.trim().to_ascii_uppercase();
    CODES.split(',').find_map(|pair| {
        let (a3, a2) = pair.split_once(' ')?;
        (up == a3 || up == a2).then_some(a2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_map_to_alpha2() {
        assert_eq!(alpha2("USA"), Some("US"));
        assert_eq!(alpha2("us"), Some("US"));
        assert_eq!(alpha2(" GBR "), Some("GB"));
        assert_eq!(alpha2("DE"), Some("DE"));
        assert_eq!(alpha2("UK"), None, "UK is not an ISO code (GB is)");
        assert_eq!(alpha2("XX"), None);
        assert_eq!(alpha2("United States"), None);
    }

    #[test]
    fn the_table_is_well_formed() {
        let pairs: Vec<&str> = CODES.split(',').collect();
        assert_eq!(pairs.len(), 249, "ISO 3166-1 assigns 249 codes");
        let mut a2: Vec<&str> = pairs.iter().map(|p| &p[4..]).collect();
        a2.sort_unstable();
        a2.dedup();
        assert_eq!(a2.len(), 249, "an alpha-2 code appears twice");
        for p in pairs {
            assert!(p.len() == 6 && p.as_bytes()[3] == b' ', "{p:?}");
        }
    }
}
